"""Repair: bring every stripe back to n good shards and every key's newest version to its window.

A run (:func:`repair_network`):

1. takes the inventory (:mod:`storage_network.upkeep.inventory`: every key's
   newest version, record or tombstone; the stripes of the live records);
2. locates each stripe's shards (:func:`storage_network.read.locate.locate_shards`,
   which follows the rendezvous ranking past the first n nodes);
3. checks them: every shard claimed by a *suspect* node (one an audit
   found corrupt or missing shards on, :mod:`storage_network.upkeep.audit_findings`;
   every node with ``verify``) is read back and verified
   (:mod:`storage_network.upkeep.shard_check`): one that does not verify, or that
   the node claims and does not serve, counts as missing there (reading
   back rather than trusting the audit's list keeps a second run with the
   same findings from rewriting shards healed by the first);
4. for a stripe missing shards but holding at least k good ones, reads and
   verifies one holder of every other index (the next holder of an index
   when one fails, which then counts as missing as well), decodes the zstd
   frame from k verified fragments, re-encodes it (the code is
   deterministic: the stripe root must come out equal, or nothing is
   written) and stores each missing shard i on its *target*: its home
   (position i of the ranking) if that node answers and holds no good shard
   of the stripe, else the first node past position n of the ranking that
   answers and holds none (then any other such node, in ranking order) — see
   :func:`plan_stripe`.  A target holding bad bytes of that very shard gets
   a signed PUT, and the node replaces them (``storage_node``); a node that
   keeps them (one without that rule) gets ``DELETE ?before=<now + 1>`` and
   the PUT again.  Bad copies repair did not overwrite are deleted;
5. copies the newest version of every key (the signed bytes as they are, a
   record or a tombstone; nothing is re-signed) by the window rule of
   docs/consistency.md: until ``record_replicas`` nodes of the key's window
   (its first ``record_replicas + m`` nodes) hold it, to the window's
   answering nodes that lack it in ranking order, and to every window node
   holding an older version.

Stripes are handled in windows of :data:`WINDOW_STRIPES`: one batch request
per node and window for reads and for writes; memory is a window's shards.
Targets depend only on the ranking, on which nodes answer and on what they
hold, so a run is idempotent, and a run killed halfway and started again
ends where one uninterrupted run would.  Writes are atomic on the nodes, so
a killed run leaves no partial shard.  Every node failure is caught and
reported; nothing raises for a node.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from storage_network.client import NetworkClient
from storage_network.config import NodeInfo
from storage_network.errors import ChunkUnavailableError, NodeError, StorageNetworkError
from storage_network.nodes.placement import record_window
from storage_network.read.locate import Locations, locate_shards
from storage_network.upkeep.audit_findings import AuditFindings
from storage_network.upkeep.inventory import Inventory, Stripe, take_inventory
from storage_network.upkeep.shard_check import Checked, read_and_verify
from storage_network.wire.manifest import ChunkRef
from storage_network.wire.record import Record
from storage_network.wire.stripe import shard_id
from storage_network.wire.write_auth import Publisher
from storage_network.write.record_write import write_version

log = logging.getLogger("nixshard.repair")
LOCATE_BATCH = 512
WINDOW_STRIPES = 16
DEFAULT_JOBS = 8


@dataclass
class StripePlan:
    """What one stripe needs: missing shard indices and the node chosen for each.

    Attributes:
        held: shard indices with a good holder.
        targets: missing index -> the node to write it to.
        unplaceable: missing indices with no free node.
    """

    stripe: Stripe
    held: int
    targets: dict[int, NodeInfo]
    unplaceable: list[int]


@dataclass
class RepairReport:
    """What a repair run found and did (bytes are shard-body bytes, seconds wall time).

    Attributes:
        shards_written: shards stored (rebuilt), ``shards_healed`` of them in
            place of a corrupt or missing copy found by an audit or a read-back.
        corrupt_found: (node, shard) pairs counted missing because they did not
            verify when read back, or were claimed and not served.
        shards_verified: shards read back that verified.
        bad_deleted: corrupt copies deleted (not overwritten by a rebuilt one).
    """

    stripes: int = 0
    healthy: int = 0
    degraded: int = 0
    lost: list[str] = field(default_factory=list)
    shards_written: int = 0
    shards_healed: int = 0
    bytes_written: int = 0
    corrupt_found: int = 0
    shards_verified: int = 0
    bad_deleted: int = 0
    unplaceable: int = 0
    records: int = 0
    tombstones: int = 0
    records_copied: int = 0
    failures: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    planned: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """True when nothing is left to do: no failure, no lost or unplaceable shard."""
        return not (self.failures or self.lost or self.unplaceable)

    def to_json(self) -> dict[str, object]:
        """The report as JSON-ready data."""
        return {
            "stripes": self.stripes, "healthy": self.healthy, "degraded": self.degraded,
            "lost": self.lost, "shards_written": self.shards_written,
            "shards_healed": self.shards_healed, "bytes_written": self.bytes_written,
            "corrupt_found": self.corrupt_found, "shards_verified": self.shards_verified,
            "bad_deleted": self.bad_deleted, "unplaceable": self.unplaceable,
            "records": self.records, "tombstones": self.tombstones,
            "records_copied": self.records_copied, "failures": self.failures,
            "unreachable": self.unreachable, "planned": dict(self.planned),
            "seconds": round(self.seconds, 3),
        }


def plan_stripe(stripe: Stripe, holders: dict[int, list[NodeInfo]], rank: Sequence[NodeInfo],
                unreachable: set[str] | dict[str, str]) -> StripePlan:
    """Choose a target node for each missing shard of ``stripe`` (see the module docstring).

    Args:
        holders: shard index -> nodes holding a good copy.
        rank: the chunk's rendezvous ranking.
        unreachable: ids of nodes that do not answer.

    First every missing shard whose home answers and holds nothing of the
    stripe goes home; then the others, in index order, take the first such
    node past position n of the ranking, then any other such node in
    ranking order.
    """
    used = {node.id for nodes in holders.values() for node in nodes}
    missing = [i for i in range(stripe.n) if not holders.get(i)]

    def free(node: NodeInfo) -> bool:
        return node.id not in used and node.id not in unreachable

    targets: dict[int, NodeInfo] = {}
    for index in missing:
        if index < len(rank) and free(rank[index]):
            targets[index] = rank[index]
            used.add(rank[index].id)
    unplaceable = []
    for index in missing:
        if index in targets:
            continue
        node = next((c for c in [*rank[stripe.n:], *rank[:stripe.n]] if free(c)), None)
        if node is None:
            unplaceable.append(index)
        else:
            targets[index] = node
            used.add(node.id)
    return StripePlan(stripe, stripe.n - len(missing), targets, unplaceable)


@dataclass
class _Run:
    """What the windows of one run share."""

    net: NetworkClient
    publisher: Publisher
    report: RepairReport
    dry_run: bool
    suspects: set[str]
    limit: asyncio.Semaphore
    progress: Callable[[int], None]


@dataclass
class _Window:
    """Up to :data:`WINDOW_STRIPES` stripes of one locate batch, checked and healed together."""

    numbers: list[int]
    stripes: list[Stripe]
    locations: Locations
    claims: list[dict[int, list[NodeInfo]]] = field(default_factory=list)
    checked: Checked = field(default_factory=Checked)

    def drop(self, bad: set[tuple[str, str]] | dict[tuple[str, str], str]) -> None:
        """Remove the (node, shard) pairs of ``bad`` from the claims."""
        for stripe, claim in zip(self.stripes, self.claims, strict=True):
            for index, nodes in list(claim.items()):
                sid = shard_id(stripe.ref.root, index)
                claim[index] = [n for n in nodes if (n.id, sid) not in bad]

    def missing(self, number: int) -> list[int]:
        """Indices of stripe ``number`` (in the window) with no good holder left."""
        claim = self.claims[number]
        return [i for i in range(self.stripes[number].n) if not claim.get(i)]


def _start_window(numbers: list[int], stripes: list[Stripe], locations: Locations) -> _Window:
    """A window of stripes with the holders ``has`` claims for them."""
    window = _Window(numbers, stripes, locations)
    for number in numbers:
        window.claims.append({i: list(nodes) for i, nodes in locations.holders[number].items()})
    return window


async def _read_suspects(run: _Run, window: _Window) -> None:
    """Read back and verify every shard a suspect node claims in ``window``."""
    wanted: dict[str, list[tuple[ChunkRef, int]]] = defaultdict(list)
    for stripe, claim in zip(window.stripes, window.claims, strict=True):
        for index, nodes in claim.items():
            for node in nodes:
                if node.id in run.suspects:
                    wanted[node.id].append((stripe.ref, index))
    if wanted:
        await read_and_verify(run.net, wanted, window.stripes[0].k, window.checked)
        window.drop(window.checked.bad)


async def _read_for_rebuild(run: _Run, window: _Window) -> None:
    """For every stripe missing shards: read one good holder of each other index
    until k verified (the next holder of an index when one fails)."""
    asked: set[tuple[str, str]] = set(window.checked.bad) | window.checked.unread
    while True:
        wanted: dict[str, list[tuple[ChunkRef, int]]] = defaultdict(list)
        for number, stripe in enumerate(window.stripes):
            if not window.missing(number):
                continue
            have = {i for (root, i) in window.checked.fragments if root == stripe.ref.root}
            if len(have) >= stripe.k:
                continue
            for index, nodes in window.claims[number].items():
                if index in have:
                    continue
                sid = shard_id(stripe.ref.root, index)
                node = next((n for n in nodes if (n.id, sid) not in asked), None)
                if node is not None:
                    asked.add((node.id, sid))
                    wanted[node.id].append((stripe.ref, index))
        if not wanted:
            return
        await read_and_verify(run.net, wanted, window.stripes[0].k, window.checked)
        window.drop(window.checked.bad)


async def _write(run: _Run, node: NodeInfo, items: list[tuple[str, bytes]],
                 bad_here: set[str]) -> list[str]:
    """Store ``items`` on ``node`` in one batch; a shard in ``bad_here`` the node kept
    (it did not replace its bad bytes) is deleted and put again.  Returns the ids stored."""
    client = run.net.nodes[node.id]
    try:
        created = await client.put_shards(items, run.publisher)
    except NodeError as exc:
        run.net.health.node_error(node.id, exc)
        run.report.failures.append(f"{len(items)} shards to {node.id}: {exc}")
        return []
    stored = [sid for sid, _ in items if sid in created or sid not in bad_here]
    for sid, body in items:
        if sid in bad_here and sid not in created:
            try:
                await client.delete_shard(sid, time.time() + 1, run.publisher)
                await client.put_shard(sid, body, run.publisher)
            except NodeError as exc:
                run.report.failures.append(f"shard {sid[:20]} to {node.id}: {exc}")
                continue
            stored.append(sid)
    return stored


async def _rebuild(run: _Run, window: _Window, plans: dict[int, StripePlan]) -> None:
    """Decode, re-encode and write the planned shards of ``window``."""
    net, report = run.net, run.report
    loop = asyncio.get_running_loop()
    writes: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    nodes: dict[str, NodeInfo] = {}
    healing: set[tuple[str, str]] = set()
    for plan in plans.values():
        s = plan.stripe
        fragments = {i: frag for (root, i), frag in window.checked.fragments.items()
                     if root == s.ref.root}
        codec = net.codec(s.codec, s.k, s.m)
        try:
            frame = await loop.run_in_executor(net.pool, codec.decode, s.ref, fragments)
            root, bodies = await loop.run_in_executor(net.pool, codec.encode_frame, frame)
        except ChunkUnavailableError as exc:
            report.failures.append(f"stripe {s.ref.root.hex()[:16]}: {exc}")
            continue
        if root != s.ref.root:
            report.failures.append(
                f"stripe {s.ref.root.hex()[:16]}: re-encoding gave root {root.hex()[:16]} "
                f"({s.codec} {s.k}+{s.m}); refusing to write")
            continue
        bad_indices = {i for i in range(s.n) if _was_bad(window, s, i)}
        for index, node in sorted(plan.targets.items()):
            sid = shard_id(root, index)
            writes[node.id].append((sid, bodies[index]))
            nodes[node.id] = node
            if index in bad_indices:
                healing.add((node.id, sid))

    async def one(node_id: str, items: list[tuple[str, bytes]]) -> None:
        proven = {sid for sid, _ in items if (node_id, sid) in window.checked.bad}
        stored = await _write(run, nodes[node_id], items, proven)
        sizes = dict(items)
        report.shards_written += len(stored)
        report.bytes_written += sum(len(sizes[sid]) for sid in stored)
        report.shards_healed += sum((node_id, sid) in healing for sid in stored)

    await asyncio.gather(*(one(node_id, items) for node_id, items in writes.items()))
    await _delete_leftovers(run, window, {(n, sid) for n, items in writes.items()
                                          for sid, _ in items})


def _was_bad(window: _Window, stripe: Stripe, index: int) -> bool:
    """True when some copy of shard ``index`` was found bad when read back."""
    sid = shard_id(stripe.ref.root, index)
    return any(s == sid for _, s in window.checked.bad)


async def _delete_leftovers(run: _Run, window: _Window, rewritten: set[tuple[str, str]]) -> None:
    """Delete the copies proven corrupt that no rebuilt shard replaced."""
    for (node_id, sid), why in sorted(window.checked.bad.items()):
        if why != "corrupt" or (node_id, sid) in rewritten:
            continue
        try:
            if await run.net.nodes[node_id].delete_shard(sid, time.time() + 1, run.publisher):
                run.report.bad_deleted += 1
        except NodeError as exc:
            run.report.failures.append(f"corrupt shard {sid[:20]} on {node_id} not deleted: "
                                       f"{exc}")


async def _heal_window(run: _Run, window: _Window) -> None:
    """Check, plan and (unless a dry run) rebuild the stripes of one window."""
    report = run.report
    await _read_suspects(run, window)
    if not run.dry_run:
        await _read_for_rebuild(run, window)
    report.corrupt_found += len(window.checked.bad)
    report.shards_verified += window.checked.verified
    plans: dict[int, StripePlan] = {}
    for pos, (number, stripe) in enumerate(zip(window.numbers, window.stripes, strict=True)):
        plan = plan_stripe(stripe, window.claims[pos], window.locations.rankings[number],
                           window.locations.unreachable)
        if not plan.targets and not plan.unplaceable:
            report.healthy += 1
            continue
        report.degraded += 1
        root = stripe.ref.root.hex()
        if plan.held < stripe.k:
            report.lost.append(root)
            log.error("stripe %s: %d of %d shards found good, %d needed: cannot rebuild",
                      root[:16], plan.held, stripe.n, stripe.k)
            continue
        report.unplaceable += len(plan.unplaceable)
        for index in plan.unplaceable:
            log.warning("stripe %s: no free node for shard %d (every answering node "
                        "of its ranking holds one)", root[:16], index)
        for index, node in sorted(plan.targets.items()):
            report.planned[node.id].append(shard_id(stripe.ref.root, index))
        if plan.targets:
            plans[pos] = plan
    if not run.dry_run and plans:
        await _rebuild(run, window, plans)
    elif not run.dry_run:
        await _delete_leftovers(run, window, set())


async def _repair_batch(run: _Run, stripes: Sequence[Stripe]) -> None:
    """Locate a batch of stripes (one k, m) and heal it window by window."""
    k, m = stripes[0].k, stripes[0].m
    locations = await locate_shards(run.net, [s.ref for s in stripes], k, m)
    run.report.unreachable.update(locations.unreachable)

    async def one(start: int) -> None:
        numbers = list(range(start, min(len(stripes), start + WINDOW_STRIPES)))
        try:
            async with run.limit:
                window = _start_window(numbers, [stripes[i] for i in numbers], locations)
                await _heal_window(run, window)
        except StorageNetworkError as exc:
            run.report.failures.append(str(exc))
        finally:
            run.progress(len(numbers))

    await asyncio.gather(*(one(start) for start in range(0, len(stripes), WINDOW_STRIPES)))


async def _newest_bytes(net: NetworkClient, key: str, top: Record,
                        holders: list[str]) -> bytes | None:
    """The exact bytes of ``top`` read from one of ``holders`` (checked by digest)."""
    for node_id in holders:
        try:
            data = await net.nodes[node_id].get_record(key, peek=True)
        except NodeError as exc:
            net.health.node_error(node_id, exc)
            continue
        if data is not None and hashlib.sha256(data).digest() == top.digest:
            return data
    return None


async def _repair_records(net: NetworkClient, publisher: Publisher, inv: Inventory,
                          report: RepairReport, dry_run: bool) -> None:
    """Copy each key's newest version to its window (see the module docstring)."""
    replicas = net.network.record_replicas

    async def copy(key: str) -> None:
        top = inv.newest(key)
        if top is None:
            return
        have = set(inv.holders_of_newest(key))
        versions = inv.versions.get(key, {})
        window = [n for n in record_window(net.network, key) if n.id not in inv.unreachable]
        need = replicas - sum(n.id in have for n in window)
        lacking = [n for n in window if n.id not in have]
        stale = [n for n in lacking if n.id in versions]
        first = lacking[:max(0, need)]
        planned = [*first, *(n for n in stale if n not in first)]
        if not planned:
            return
        if dry_run:
            report.planned["records"].extend(f"{key} -> {n.id}" for n in planned)
            return
        data = await _newest_bytes(net, key, top, sorted(have))
        if data is None:
            report.failures.append(f"record {key}: no copy of its newest version could be read")
            return
        done: set[str] = set()
        if need > 0:
            outcome = await write_version(net, publisher, key, data, top, replicas=need,
                                          window=lacking)
            done.update(outcome.stored)
            if outcome.conflict is not None or outcome.superseded is not None:
                report.failures.append(f"record {key}: {outcome.failure_text()}")
            elif len(outcome.stored) < need:
                report.failures.append(f"record {key}: copied to {len(outcome.stored)} of "
                                       f"{need} nodes: {outcome.failure_text()}")
        for node in stale:
            if node.id in done:
                continue
            try:
                await net.nodes[node.id].put_record(key, data, publisher)
                done.add(node.id)
            except NodeError as exc:
                report.failures.append(f"record {key} to {node.id}: {exc}")
        report.records_copied += len(done)

    await asyncio.gather(*(copy(key) for key in sorted({*inv.records, *inv.tombstones})))


async def repair_network(net: NetworkClient, publisher: Publisher, *, dry_run: bool = False,
                         jobs: int = DEFAULT_JOBS, findings: AuditFindings | None = None,
                         verify: bool = False,
                         on_start: Callable[[int], None] | None = None,
                         progress: Callable[[int], None] | None = None) -> RepairReport:
    """One repair run over the whole network (see the module docstring).

    Args:
        publisher: signs the shard and record writes (nodes accept only listed publishers).
        dry_run: plan only; write nothing (``report.planned`` lists the targets).
            Suspect nodes are still read back (reads change nothing).
        jobs: windows of up to :data:`WINDOW_STRIPES` stripes handled at once, at most.
        findings: an audit's findings (``nixshard repair --from-audit``): every
            node it found corrupt or missing shards on is read back in full, and
            each shard that does not verify counts as missing.
        verify: read back and verify every shard of every node (a full scrub).
        on_start: called once with the number of stripes to check.
        progress: called with the number of stripes checked, as they are.

    Node failures never raise: they land in ``report.failures`` and
    ``report.unreachable``; stripes with fewer than k good shards found are
    in ``report.lost``.
    """
    started = time.monotonic()
    report = RepairReport()
    inv = await take_inventory(net)
    report.unreachable.update(inv.unreachable)
    report.failures.extend(f"record {key}: {why}" for key, why in sorted(inv.bad_records.items()))
    report.records = len(inv.records)
    report.tombstones = len(inv.tombstones)
    groups: dict[tuple[str, int, int], list[Stripe]] = defaultdict(list)
    for root in sorted(inv.stripes):
        s = inv.stripes[root]
        groups[(s.codec, s.k, s.m)].append(s)
    report.stripes = len(inv.stripes)
    if on_start is not None:
        on_start(report.stripes)
    findings = findings or AuditFindings()
    suspects = ({n.id for n in net.network.nodes} if verify
                else {*findings.suspects, *findings.bad})
    run = _Run(net, publisher, report, dry_run, suspects,
               asyncio.Semaphore(max(1, jobs)), progress or (lambda _n: None))
    for stripes in groups.values():
        for start in range(0, len(stripes), LOCATE_BATCH):
            await _repair_batch(run, stripes[start:start + LOCATE_BATCH])
    await _repair_records(net, publisher, inv, report, dry_run)
    report.seconds = time.monotonic() - started
    return report

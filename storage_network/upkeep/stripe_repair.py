"""Repair of the stripes, window by window: check, read, rebuild and write shards.

A batch of stripes of one k and m is located at once
(:func:`~storage_network.read.locate.locate_shards`) and handled in windows of
:data:`WINDOW_STRIPES`: one batch request per node and window for reads and
for writes; memory is a window's shards.  For each window
(:func:`repair_batch`):

1. every shard claimed by a *suspect* node is read back and verified
   (:mod:`storage_network.upkeep.shard_check`); one that does not verify, or
   that the node claims and does not serve, counts as missing there;
2. for a stripe missing shards but holding at least k good ones, one holder
   of every other index is read and verified (the next holder of an index
   when one fails), the zstd frame decoded from k verified fragments and
   re-encoded (the stripe root must come out equal, or nothing is written);
3. each missing shard is stored on its target
   (:func:`~storage_network.upkeep.repair_targets.plan_stripe`).  A target
   holding bad bytes of that very shard gets a signed PUT, and the node
   replaces them; a node that keeps them gets ``DELETE ?before=<now + 1>``
   and the PUT again.  Bad copies repair did not overwrite are deleted.

Every node failure is caught and reported in the run's
:class:`~storage_network.upkeep.repair_report.RepairReport`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from storage_network.client import NetworkClient
from storage_network.config import NodeInfo
from storage_network.errors import ChunkUnavailableError, NodeError, StorageNetworkError
from storage_network.read.locate import Locations, locate_shards
from storage_network.upkeep.record_table import Stripe
from storage_network.upkeep.repair_report import RepairReport
from storage_network.upkeep.repair_targets import StripePlan, missing_indices, plan_stripe
from storage_network.upkeep.shard_check import Checked, read_and_verify
from storage_network.wire.manifest import ChunkRef
from storage_network.wire.stripe import shard_id
from storage_network.wire.write_auth import Publisher

log = logging.getLogger("nixshard.repair")
WINDOW_STRIPES = 16


@dataclass
class RepairRun:
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
        """Indices of stripe ``number`` (in the window) with no good active holder left
        (:func:`~storage_network.upkeep.repair_targets.missing_indices`)."""
        return missing_indices(self.stripes[number], self.claims[number])


def _start_window(numbers: list[int], stripes: list[Stripe], locations: Locations) -> _Window:
    """A window of stripes with the holders ``has`` claims for them."""
    window = _Window(numbers, stripes, locations)
    for number in numbers:
        window.claims.append({i: list(nodes) for i, nodes in locations.holders[number].items()})
    return window


async def _read_suspects(run: RepairRun, window: _Window) -> None:
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


async def _read_for_rebuild(run: RepairRun, window: _Window) -> None:
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


async def _write(run: RepairRun, node: NodeInfo, items: list[tuple[str, bytes]],
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


async def _rebuild(run: RepairRun, window: _Window, plans: dict[int, StripePlan]) -> None:
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
            root, bodies = await loop.run_in_executor(net.pool, codec.reencode, frame,
                                                      s.ref.root)
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


async def _delete_leftovers(run: RepairRun, window: _Window,
                            rewritten: set[tuple[str, str]]) -> None:
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


async def _heal_window(run: RepairRun, window: _Window) -> None:
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


async def repair_batch(run: RepairRun, stripes: Sequence[Stripe]) -> None:
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

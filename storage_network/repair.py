"""Repair: bring every stripe back to n good shards and every record to its replicas.

A run (:func:`repair_network`):

1. takes the inventory (every valid record, every stripe they reference);
2. locates each stripe's shards (:func:`storage_network.locate.locate_shards`,
   which follows the rendezvous ranking past the first n nodes);
3. for a stripe missing shards but holding at least k, fetches and verifies
   any k, decodes the zstd frame, re-encodes it (the code is deterministic:
   the stripe root must come out equal, or nothing is written) and stores
   each missing shard i on its *target*: its home (position i of the
   ranking) if that node answers and holds no shard of the stripe, else the
   first node past position n of the ranking that answers and holds none
   (then any other such node, in ranking order) — see :func:`plan_stripe`;
4. copies each record to those of the first ``record_replicas`` answering
   nodes of its ranking that lack it (a copy of the signed bytes; nothing
   is re-signed); readers follow the ranking past nodes that do not answer.

Targets depend only on the ranking and on which nodes answer and what they
hold, so a run is idempotent, and a run killed halfway and started again
ends where one uninterrupted run would: shards already written count as
held, and the remaining ones go where they would have gone.  Writes are
atomic on the nodes, so a killed run leaves no partial shard.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .auth import Publisher
from .errors import ChunkUnavailableError, NodeError, StorageNetworkError
from .fetch import fetch_chunk
from .inventory import Inventory, Stripe, take_inventory
from .locate import Locations, locate_shards
from .manifest import Manifest
from .network_client import NetworkClient
from .network_file import NodeInfo
from .placement import record_nodes
from .stripe import shard_id

log = logging.getLogger("nixshard.repair")
LOCATE_BATCH = 512
DEFAULT_JOBS = 8


@dataclass
class StripePlan:
    """What one stripe needs: missing shard indices and the node chosen for each."""

    stripe: Stripe
    held: int
    targets: dict[int, NodeInfo]
    unplaceable: list[int]


@dataclass
class RepairReport:
    """What a repair run found and did (bytes are shard-body bytes, seconds wall time)."""

    stripes: int = 0
    healthy: int = 0
    degraded: int = 0
    lost: list[str] = field(default_factory=list)
    shards_written: int = 0
    bytes_written: int = 0
    unplaceable: int = 0
    records: int = 0
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
            "bytes_written": self.bytes_written, "unplaceable": self.unplaceable,
            "records": self.records, "records_copied": self.records_copied,
            "failures": self.failures, "unreachable": self.unreachable,
            "planned": dict(self.planned), "seconds": round(self.seconds, 3),
        }


def plan_stripe(stripe: Stripe, locations: Locations, number: int) -> StripePlan:
    """Choose a target node for each missing shard of ``stripe`` (see the module docstring).

    ``number`` is the stripe's position in ``locations``.  First every
    missing shard whose home answers and holds nothing of the stripe goes
    home; then the others, in index order, take the first such node past
    position n of the ranking, then any other such node in ranking order.
    """
    have = locations.holders[number]
    rank = locations.rankings[number]
    used = locations.holding(number)
    missing = [i for i in range(stripe.n) if i not in have]

    def free(node: NodeInfo) -> bool:
        return node.id not in used and node.id not in locations.unreachable

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
    return StripePlan(stripe, len(have), targets, unplaceable)


async def _rebuild(net: NetworkClient, publisher: Publisher, plan: StripePlan,
                   holders: dict[int, list[NodeInfo]], report: RepairReport) -> None:
    s = plan.stripe
    loop = asyncio.get_running_loop()
    frame = await fetch_chunk(net, Manifest(s.codec, s.k, s.m, ()), s.ref, holders)
    codec = net.codec(s.codec, s.k, s.m)
    root, bodies = await loop.run_in_executor(net.pool, codec.encode_frame, frame)
    if root != s.ref.root:
        raise StorageNetworkError(
            f"stripe {s.ref.root.hex()[:16]}: re-encoding gave root {root.hex()[:16]} "
            f"({s.codec} {s.k}+{s.m}); refusing to write")

    async def put(index: int, node: NodeInfo) -> None:
        sid = shard_id(root, index)
        try:
            await net.nodes[node.id].put_shard(sid, bodies[index], publisher)
        except NodeError as exc:
            report.failures.append(f"shard {sid[:20]} to {node.id}: {exc}")
            return
        report.shards_written += 1
        report.bytes_written += len(bodies[index])

    await asyncio.gather(*(put(i, node) for i, node in sorted(plan.targets.items())))


async def _repair_batch(net: NetworkClient, publisher: Publisher, stripes: Sequence[Stripe],
                        report: RepairReport, dry_run: bool, limit: asyncio.Semaphore,
                        progress: Callable[[int], None]) -> None:
    k, m = stripes[0].k, stripes[0].m
    locations = await locate_shards(net, [s.ref for s in stripes], k, m)
    report.unreachable.update(locations.unreachable)

    async def one(number: int, stripe: Stripe) -> None:
        try:
            plan = plan_stripe(stripe, locations, number)
            if not plan.targets and not plan.unplaceable:
                report.healthy += 1
                return
            report.degraded += 1
            root = stripe.ref.root.hex()
            if plan.held < stripe.k:
                report.lost.append(root)
                log.error("stripe %s: %d of %d shards found, %d needed: cannot rebuild",
                          root[:16], plan.held, stripe.n, stripe.k)
                return
            report.unplaceable += len(plan.unplaceable)
            for index in plan.unplaceable:
                log.warning("stripe %s: no free node for shard %d (every answering node "
                            "of its ranking holds one)", root[:16], index)
            for index, node in sorted(plan.targets.items()):
                report.planned[node.id].append(shard_id(stripe.ref.root, index))
            if dry_run or not plan.targets:
                return
            async with limit:
                await _rebuild(net, publisher, plan, locations.holders[number], report)
        except (ChunkUnavailableError, StorageNetworkError) as exc:
            report.failures.append(str(exc))
        finally:
            progress(1)

    await asyncio.gather(*(one(i, s) for i, s in enumerate(stripes)))


async def _repair_records(net: NetworkClient, publisher: Publisher, inv: Inventory,
                          report: RepairReport, dry_run: bool) -> None:
    replicas = net.network.record_replicas

    async def copy(key: str) -> None:
        listed = inv.listings.get(key, {})
        live = [n for n in record_nodes(net.network.nodes, key)
                if n.id not in inv.unreachable][:replicas]
        want = [n for n in live if n.id not in listed]
        if not want:
            return
        if dry_run:
            report.planned["records"].extend(f"{key} -> {n.id}" for n in want)
            return
        data = None
        for node_id in listed:
            try:
                data = await net.nodes[node_id].get_record(key, peek=True)
            except NodeError:
                continue
            if data is not None:
                break
        if data is None:
            report.failures.append(f"record {key}: no listed copy could be read")
            return
        for node in want:
            try:
                await net.nodes[node.id].put_record(key, data, publisher)
                report.records_copied += 1
            except NodeError as exc:
                report.failures.append(f"record {key} to {node.id}: {exc}")

    await asyncio.gather(*(copy(key) for key in sorted(inv.records)))


async def repair_network(net: NetworkClient, publisher: Publisher, *, dry_run: bool = False,
                         jobs: int = DEFAULT_JOBS,
                         on_start: Callable[[int], None] | None = None,
                         progress: Callable[[int], None] | None = None) -> RepairReport:
    """One repair run over the whole network (see the module docstring).

    Args:
        publisher: signs the shard and record writes (nodes accept only listed publishers).
        dry_run: plan only; write nothing (``report.planned`` lists the targets).
        jobs: stripes rebuilt at once, at most.
        on_start: called once with the number of stripes to check.
        progress: called with 1 per stripe checked.

    Node failures never raise: they land in ``report.failures`` and
    ``report.unreachable``; stripes with fewer than k shards found are in
    ``report.lost``.
    """
    started = time.monotonic()
    report = RepairReport()
    inv = await take_inventory(net)
    report.unreachable.update(inv.unreachable)
    report.failures.extend(f"record {key}: {why}" for key, why in sorted(inv.bad_records.items()))
    report.records = len(inv.records)
    groups: dict[tuple[str, int, int], list[Stripe]] = defaultdict(list)
    for root in sorted(inv.stripes):
        s = inv.stripes[root]
        groups[(s.codec, s.k, s.m)].append(s)
    report.stripes = len(inv.stripes)
    if on_start is not None:
        on_start(report.stripes)
    limit = asyncio.Semaphore(max(1, jobs))
    tick = progress or (lambda _n: None)
    for stripes in groups.values():
        for start in range(0, len(stripes), LOCATE_BATCH):
            await _repair_batch(net, publisher, stripes[start:start + LOCATE_BATCH], report,
                                dry_run, limit, tick)
    await _repair_records(net, publisher, inv, report, dry_run)
    report.seconds = time.monotonic() - started
    return report

"""Garbage collection: expire records, then delete the shards no record references.

:func:`collect_garbage` runs in three steps from a start time ``t0``:

1. **Inventory.**  Every node lists its records; every listed copy of every
   record is read (with ``X-Nixshard-Peek: 1``, so the collector's reads do
   not count as uses) and verified.  A key's newest valid version decides
   what it is (:mod:`storage_network.upkeep.inventory`): a live record or a
   tombstone (deleted).
2. **Expiry.**  A live record expires when its signed ``created`` time is
   before ``t0 - max_age``, or when the key's last read (the latest atime
   over the nodes listing it) is before ``t0 - max_idle``.  It is deleted by
   writing a signed tombstone (``created`` = one second before ``t0``, so
   a push whose record is sealed in the second the collection starts still
   wins over it; one second past the record when that is later) the way a
   record is written
   (:func:`storage_network.write.record_write.write_version`: the arbiter, then
   the window until ``record_replicas`` nodes hold it), then to every other
   node still listing a copy.  A node that missed the deletion cannot bring
   the record back: readers see the newer tombstone among the answers of
   the window (docs/consistency.md).  When the arbiter holds a newer version
   (a push landed since the inventory), the tombstone is refused there and
   written nowhere: the record stays.  A tombstone that is already the
   newest version but not yet on ``record_replicas`` window nodes, or not on
   every node listing the key, is completed the same way.  Tombstones are
   kept (about 200 bytes each).
3. **Sweep.**  The live stripes are those referenced by any record copy of
   a key that is not deleted (a deleted key: its tombstone is on
   ``record_replicas`` window nodes).  Every node lists its shards; a shard
   whose stripe is not live and whose mtime is before ``t0 - grace`` is
   deleted with ``DELETE /shards/<id>?before=<t0 - grace>``: the node
   deletes it only if its mtime is still earlier, checking and unlinking
   under one lock.

When the live set is incomplete (a node could not list its records, a
listed record could not be read or opened) no shard is deleted unless
``force`` is set: an unknown record may reference any shard.

**Why a push racing a collection loses nothing.**  A push touches every
shard it reuses (a signed ``has`` with ``touch``) and writes every shard it
lacks, each of which sets the shard's mtime to now on its node, and only
then writes its record; it refuses to write the record once more than
``gc_grace_seconds / 2`` have passed since the first touch
(:func:`storage_network.write.publish.check_push_window`).  Let ``s`` be that
first touch and ``r`` the record write, ``r - s <= grace / 2``.  If the
record landed before the collector listed records (after ``t0``), it is in
the inventory and its stripes are live.  Otherwise ``r >= t0``, so
``s >= t0 - grace / 2 > t0 - grace``: every shard of the push has an mtime
after the cut-off, is skipped by the sweep or refused by its node (412).  A
shard deleted before the push touched it is reported absent by ``has`` and
uploaded again.  The other ``grace / 2`` absorbs clock differences between
publisher, nodes and collector.  This needs ``grace`` >= the network file's
``gc_grace_seconds`` (the CLI's default); a smaller grace (tests use 0) is
safe only when nobody pushes meanwhile.

Records are deleted before the sweep decides, and a dry run assumes every
tombstone write succeeds, so a dry run lists exactly what a real run
started at the same moment on an unchanged network deletes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from storage_network.client import NetworkClient
from storage_network.errors import NodeError, ShardProofError
from storage_network.nodes.placement import record_window
from storage_network.upkeep.inventory import Inventory, RecordCopy, take_inventory
from storage_network.wire.listing import ListedShard
from storage_network.wire.record import Record, open_record, seal_tombstone
from storage_network.wire.stripe import parse_shard_id
from storage_network.wire.write_auth import Publisher
from storage_network.write.record_write import write_version

log = logging.getLogger("nixshard.gc")

REQUESTS_IN_FLIGHT = 16


@dataclass(frozen=True)
class ExpiredRecord:
    """A record that expired: key, why, and the nodes whose copy a tombstone replaced
    (would replace, dry run)."""

    key: str
    reason: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class KeptRecord:
    """An expired record copy that stays: on which node and why (a newer version was
    written since, the tombstone reached too few nodes, a node failed)."""

    key: str
    node: str
    reason: str


@dataclass
class NodeSweep:
    """The shard sweep of one node.

    Attributes:
        deleted: shards deleted (dry run: that would be), with sizes.
        kept_recent: unreferenced shards kept because they were written or
            touched after the cut-off, seen in the listing or answered by the
            node at delete time (412; a shard gone meanwhile counts here too).
        errors: deletes that failed, or why the node was not swept.
    """

    deleted: list[ListedShard] = field(default_factory=list)
    kept_recent: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def deleted_bytes(self) -> int:
        """Bytes of the deleted shards."""
        return sum(s.size for s in self.deleted)


@dataclass
class GcReport:
    """What one collection did (or, with ``dry_run``, would do).

    Attributes:
        started: ``t0``, unix seconds.
        cutoff: ``t0 - grace``: unreferenced shards older than this go.
        expired: expired records, each with its reason.
        kept_records: expired copies that stay (replaced meanwhile, node error).
        live_stripes: stripes referenced by the records that stay.
        swept: whether shards were considered for deletion at all.
        nodes: node id -> its sweep.
        skipped: why some of the work was not done (incomplete inventory, ...).
    """

    started: float
    dry_run: bool
    grace: float
    expired: list[ExpiredRecord] = field(default_factory=list)
    kept_records: list[KeptRecord] = field(default_factory=list)
    live_stripes: int = 0
    swept: bool = False
    nodes: dict[str, NodeSweep] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def cutoff(self) -> float:
        """``started - grace``."""
        return self.started - self.grace

    @property
    def deleted_shards(self) -> int:
        """Shards deleted over all nodes."""
        return sum(len(n.deleted) for n in self.nodes.values())

    @property
    def deleted_bytes(self) -> int:
        """Bytes deleted over all nodes."""
        return sum(n.deleted_bytes for n in self.nodes.values())

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (shard counts and bytes, not ids)."""
        return {
            "dry_run": self.dry_run,
            "started": round(self.started, 3),
            "grace_seconds": self.grace,
            "expired_records": [{"key": e.key, "reason": e.reason, "nodes": list(e.nodes)}
                                for e in self.expired],
            "kept_records": [{"key": k.key, "node": k.node, "reason": k.reason}
                             for k in self.kept_records],
            "live_stripes": self.live_stripes,
            "shards_swept": self.swept,
            "nodes": {node_id: {"deleted_shards": len(s.deleted),
                                "deleted_bytes": s.deleted_bytes,
                                "kept_recent": s.kept_recent,
                                "errors": s.errors}
                      for node_id, s in sorted(self.nodes.items())},
            "deleted_shards": self.deleted_shards,
            "deleted_bytes": self.deleted_bytes,
            "skipped": self.skipped,
        }


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f} d"


async def collect_garbage(net: NetworkClient, publisher: Publisher, *,
                          max_age: float | None, max_idle: float | None, grace: float,
                          dry_run: bool, force: bool = False,
                          now: float | None = None) -> GcReport:
    """Expire records and delete unreferenced shards (see the module docstring).

    Args:
        publisher: signs the deletes (nodes accept deletes from accepted publishers).
        max_age: expire records created more than this many seconds before ``now``.
        max_idle: expire records nobody read for more than this many seconds.
        grace: keep unreferenced shards written or touched less than this many
            seconds before ``now`` (at least the network's ``gc_grace_seconds``
            when pushes may run meanwhile).
        dry_run: decide and report, delete nothing.
        force: sweep shards even when the live set is incomplete.
        now: ``t0``, unix seconds (default: the clock).

    Raises:
        ValueError: a negative duration.
    """
    for name, value in (("max_age", max_age), ("max_idle", max_idle), ("grace", grace)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    t0 = time.time() if now is None else now
    report = GcReport(started=t0, dry_run=dry_run, grace=grace)
    limit = asyncio.Semaphore(REQUESTS_IN_FLIGHT)
    inv = await take_inventory(net, every_copy=True)
    incomplete = ([f"node {n} could not list its records: {why}"
                   for n, why in sorted(inv.unreachable.items())]
                  + [f"record {k} could not be opened: {why}"
                     for k, why in sorted(inv.bad_records.items())]
                  + inv.copy_problems)

    live: set[bytes] = set()
    await asyncio.gather(*(_expire(net, publisher, key, held, inv, report, live, limit,
                                   max_age, max_idle)
                           for key, held in sorted(inv.copies.items())))
    report.expired.sort(key=lambda e: e.key)
    report.kept_records.sort(key=lambda k: (k.key, k.node))
    report.live_stripes = len(live)

    if incomplete:
        report.skipped.extend(incomplete)
        if not force:
            report.skipped.append(
                "no shard deleted: the live set is incomplete (see above), an unseen record "
                "may reference any shard; fix the nodes or pass --force")
            return report
        report.skipped.append("live set incomplete, sweeping anyway (--force)")
    report.swept = True
    await _sweep(net, publisher, report, live, limit)
    return report


def _expiry(record: Record, inv: Inventory, t0: float, max_age: float | None,
            max_idle: float | None) -> str | None:
    """Why the live record ``record`` expired at ``t0``, or None when it stays."""
    if max_age is not None and record.created < t0 - max_age:
        return f"age: created {_days(t0 - record.created)} ago (max {_days(max_age)})"
    if max_idle is not None:
        last_read = max(entry.atime for entry in inv.listings[record.key].values())
        if last_read < t0 - max_idle:
            return f"idle: last read {_days(t0 - last_read)} ago (max {_days(max_idle)})"
    return None


async def _spread(net: NetworkClient, publisher: Publisher, key: str, data: bytes,
                  nodes: list[str], report: GcReport, limit: asyncio.Semaphore) -> list[str]:
    """Put the tombstone ``data`` on ``nodes`` (old copies outside the window's R);
    returns the nodes that took it, a kept-copy line for each other."""
    took = []
    for node_id in nodes:
        try:
            async with limit:
                await net.nodes[node_id].put_record(key, data, publisher)
        except NodeError as exc:
            report.kept_records.append(KeptRecord(key, node_id, f"old copy stays: {exc}"))
            continue
        took.append(node_id)
    return took


async def _expire(net: NetworkClient, publisher: Publisher, key: str,
                  held: dict[str, RecordCopy], inv: Inventory, report: GcReport,
                  live: set[bytes], limit: asyncio.Semaphore, max_age: float | None,
                  max_idle: float | None) -> None:
    """Judge key ``key`` by its newest version: an expired record gets a tombstone, a
    tombstone not on ``record_replicas`` window nodes yet is completed; the stripes
    of the record copies of a key not deleted go to ``live``."""
    top = inv.newest(key)
    if top is None:
        return
    if top.tombstone:
        if not await _complete(net, publisher, key, held, inv, report, limit):
            _keep(held, live)
        return
    reason = _expiry(top, inv, report.started, max_age, max_idle)
    if reason is None:
        _keep(held, live)
        return
    copies = sorted(node_id for node_id, copy in held.items() if not copy.record.tombstone)
    if report.dry_run:
        report.expired.append(ExpiredRecord(key, reason, tuple(copies)))
        return
    man = top.manifest
    data = seal_tombstone(publisher, key, man.codec, man.k, man.m,
                          created=max(int(report.started) - 1, top.created + 1))
    tomb = open_record({publisher.name: publisher.public}, key, data)
    async with limit:
        outcome = await write_version(net, publisher, key, data, tomb)
    if outcome.superseded is not None or len(outcome.stored) < net.network.record_replicas:
        why = ("a newer version was written since it was read"
               if outcome.superseded is not None else
               f"tombstone on {len(outcome.stored)} of {net.network.record_replicas} "
               f"nodes: {outcome.failure_text()}")
        for node_id in copies:
            report.kept_records.append(KeptRecord(key, node_id, why))
        _keep(held, live)
        return
    rest = [node_id for node_id in copies if node_id not in outcome.stored]
    gone = set(copies) & set(outcome.stored)
    gone.update(await _spread(net, publisher, key, data, rest, report, limit))
    report.expired.append(ExpiredRecord(key, reason, tuple(sorted(gone))))
    log.info("expired record %s (%s): tombstone on %s", key, reason,
             ", ".join(sorted(outcome.stored)))


def _keep(held: dict[str, RecordCopy], live: set[bytes]) -> None:
    """Every stripe of the record copies in ``held`` stays."""
    for copy in held.values():
        live.update(ref.root for ref in copy.record.manifest.chunks)


async def _complete(net: NetworkClient, publisher: Publisher, key: str,
                    held: dict[str, RecordCopy], inv: Inventory, report: GcReport,
                    limit: asyncio.Semaphore) -> bool:
    """Make sure the tombstone that is the newest version of ``key`` is on
    ``record_replicas`` nodes of the window and replaced every old copy; True when
    it is committed (the key's stripes may go).  A dry run assumes it will be."""
    top = inv.tombstones[key]
    having = set(inv.holders_of_newest(key))
    window = {node.id for node in record_window(net.network, key)}
    stale = sorted(node_id for node_id in held if node_id not in having)
    if len(having & window) >= net.network.record_replicas and not stale:
        return True
    if report.dry_run:
        return True
    data = next(copy.data for node_id, copy in held.items() if node_id in having)
    async with limit:
        outcome = await write_version(net, publisher, key, data, top)
    if outcome.superseded is not None or len(outcome.stored) < net.network.record_replicas:
        return False
    await _spread(net, publisher, key, data,
                  [node_id for node_id in stale if node_id not in outcome.stored], report, limit)
    return True


async def _sweep(net: NetworkClient, publisher: Publisher, report: GcReport, live: set[bytes],
                 limit: asyncio.Semaphore) -> None:
    """List every node's shards; delete (or, dry run, note) the unreferenced old ones."""
    cutoff = report.cutoff

    async def listing(node_id: str) -> list[ListedShard] | str:
        try:
            return await net.nodes[node_id].list_shards()
        except NodeError as exc:
            return str(exc)

    async def delete(node_id: str, sweep: NodeSweep, shard: ListedShard) -> None:
        try:
            async with limit:
                deleted = await net.nodes[node_id].delete_shard(shard.id, cutoff, publisher)
        except NodeError as exc:
            sweep.errors.append(str(exc))
            return
        if deleted:
            sweep.deleted.append(shard)
        else:
            sweep.kept_recent += 1

    ids = [n.id for n in net.network.nodes]
    deletes = []
    for node_id, listed in zip(ids, await asyncio.gather(*(listing(i) for i in ids)),
                               strict=True):
        sweep = report.nodes[node_id] = NodeSweep()
        if isinstance(listed, str):
            sweep.errors.append(f"not swept: {listed}")
            report.skipped.append(f"node {node_id} could not list its shards: {listed}")
            continue
        for shard in listed:
            try:
                root, _ = parse_shard_id(shard.id)
            except ShardProofError:
                log.warning("node %s lists a malformed shard id %r", node_id, shard.id[:80])
                continue
            if root in live:
                continue
            if shard.mtime >= cutoff:
                sweep.kept_recent += 1
            elif report.dry_run:
                sweep.deleted.append(shard)
            else:
                deletes.append(delete(node_id, sweep, shard))
    await asyncio.gather(*deletes)
    for node_id, sweep in report.nodes.items():
        sweep.deleted.sort(key=lambda s: s.id)
        if sweep.deleted and not report.dry_run:
            log.info("node %s: deleted %d shards, %d bytes", node_id, len(sweep.deleted),
                     sweep.deleted_bytes)

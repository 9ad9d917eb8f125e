"""Step 2 of garbage collection: expire records by writing signed tombstones.

A live record expires when its signed ``created`` time is before
``t0 - max_age``, or when the key's last read (the latest atime over the
nodes listing it) is before ``t0 - max_idle``.  It is deleted by writing a
signed tombstone the way a record is written
(:func:`storage_network.write.record_write.write_version`), then to every
other node still listing a copy; a tombstone that is already the newest
version but not yet on enough nodes is completed the same way.  The stripes
of every key that stays are collected as live for the sweep
(:mod:`storage_network.upkeep.gc` has the whole story).
"""

from __future__ import annotations

import asyncio
import logging

from storage_network.client import NetworkClient
from storage_network.errors import NodeError
from storage_network.nodes.placement import record_window
from storage_network.upkeep.gc_report import ExpiredRecord, GcReport, KeptRecord
from storage_network.upkeep.inventory import Inventory, RecordCopy
from storage_network.wire.record import Record, open_record, seal_tombstone
from storage_network.wire.write_auth import Publisher
from storage_network.write.record_write import write_version

log = logging.getLogger("nixshard.gc")


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f} d"


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


async def expire_key(net: NetworkClient, publisher: Publisher, key: str,
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

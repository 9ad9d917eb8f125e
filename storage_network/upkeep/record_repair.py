"""Repair of the records: every key's newest version copied to its window.

The newest version of every key (the signed bytes as they are, a record or a
tombstone; nothing is re-signed) is copied by the window rule of
docs/consistency.md: until ``record_replicas`` nodes of the key's window (its
first ``record_replicas + m`` nodes) hold it, to the window's answering nodes
that lack it in ranking order, and to every window node holding an older
version.  Only ``active`` nodes count and take copies: a copy on a
``draining`` node of the network map is read, not counted, so repair leaves
a draining node holding no record still needed.
"""

from __future__ import annotations

import asyncio
import hashlib

from storage_network.client import NetworkClient
from storage_network.errors import NodeError, RecordError
from storage_network.nodes.placement import record_window
from storage_network.upkeep.record_table import RecordTable, ScanOutcome
from storage_network.upkeep.repair_report import RepairReport
from storage_network.wire.record import open_record
from storage_network.wire.write_auth import Publisher
from storage_network.write.record_write import write_version

KEYS_AT_ONCE = 256
"""Keys copied at once."""


async def _newest_bytes(net: NetworkClient, key: str, digest: bytes,
                        holders: list[str]) -> bytes | None:
    """The exact bytes of the version of ``key`` whose SHA-256 is ``digest``, read from
    one of ``holders``."""
    for node_id in holders:
        try:
            data = await net.nodes[node_id].get_record(key, peek=True)
        except NodeError as exc:
            net.health.node_error(node_id, exc)
            continue
        if data is not None and hashlib.sha256(data).digest() == digest:
            return data
    return None


async def repair_records(net: NetworkClient, publisher: Publisher, table: RecordTable,
                         scan: ScanOutcome, report: RepairReport, dry_run: bool) -> None:
    """Copy each key's newest version to its window (see the module docstring),
    :data:`KEYS_AT_ONCE` keys at a time.

    Args:
        table: the scan's records (every key's newest version, and which version
            each node holds).
        scan: what the scan could not read (nodes whose listing failed take no
            copy) and the publisher keys to open the copied version under.
    """
    replicas = net.network.record_replicas

    async def copy(key: str) -> None:
        top = table.row(key)
        versions = table.copies(key)
        have = {node_id for node_id, (digest, _) in versions.items() if digest == top.digest}
        window = [n for n in record_window(net.network, key)
                  if n.state == "active" and n.id not in scan.unreachable]
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
        data = await _newest_bytes(net, key, top.digest, sorted(have))
        if data is None:
            report.failures.append(f"record {key}: no copy of its newest version could be read")
            return
        try:
            record = open_record(scan.trusted, key, data)
        except RecordError as exc:
            report.failures.append(f"record {key}: its newest version no longer opens: {exc}")
            return
        done: set[str] = set()
        if need > 0:
            outcome = await write_version(net, publisher, key, data, record, replicas=need,
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

    for keys in table.keys("1", batch=KEYS_AT_ONCE):
        await asyncio.gather(*(copy(key) for key in keys))

"""Garbage collection against real node processes (one 6-node network, k=4, m=2, per module).

Every test uses its own payloads and record keys; a collection sweeps the
whole network, so tests only assert about their own objects.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from nixshard.gc_cli import format_report
from nixshard.localnet import LocalNetwork
from storage_network.client import NetworkClient
from storage_network.errors import NotFoundError
from storage_network.nodes.placement import record_nodes
from storage_network.read.record_lookup import fetch_record
from storage_network.upkeep import gc_report
from storage_network.upkeep.gc import collect_garbage
from storage_network.upkeep.gc_report import GcReport
from storage_network.wire.manifest import Manifest
from storage_network.wire.record import open_record, seal_record
from storage_network.wire.write_auth import Publisher
from storage_network.write.publish import publish_record, store_payload
from tests.support.records import scanned

from ..conftest import NODES, payload, read_back, record_key, stripe_ids

DAY = 86400.0


async def gc(net: NetworkClient, publisher: Publisher, *, max_age: float | None = None,
             max_idle: float | None = None, grace: float = 0.0, dry_run: bool = False,
             force: bool = False) -> GcReport:
    return await collect_garbage(net, publisher, max_age=max_age, max_idle=max_idle,
                                 grace=grace, dry_run=dry_run, force=force)


async def publish(net: NetworkClient, publisher: Publisher, key: str, data: bytes,
                  age: float = 0.0) -> Manifest:
    """Store ``data`` and its record, sealed as created ``age`` seconds ago."""
    manifest, stats = await store_payload(net, publisher, [data])
    if age == 0.0:
        await publish_record(net, publisher, key, b"meta", manifest, touched_at=stats.touched_at)
        return manifest
    sealed = seal_record(publisher, key, b"meta", manifest, created=int(time.time() - age))
    for node in record_nodes(net.network.nodes, key)[:net.network.record_replicas]:
        await net.nodes[node.id].put_record(key, sealed, publisher)
    return manifest


async def read_record(net: NetworkClient, key: str) -> bytes:
    """The payload of record ``key``."""
    return await read_back(net, (await fetch_record(net, key)).manifest)


async def shards_by_node(net: NetworkClient) -> dict[str, set[str]]:
    return {node_id: {s.id for s in await client.list_shards()}
            for node_id, client in net.nodes.items()}


def held(listing: dict[str, set[str]]) -> set[str]:
    return set().union(*listing.values())


def deleted_ids(report: GcReport) -> dict[str, set[str]]:
    return {node_id: {s.id for s in sweep.deleted} for node_id, sweep in report.nodes.items()}


def record_files(local: LocalNetwork, key: str) -> list[Path]:
    paths = [local.node_dir(i) / "records" / key for i in range(1, NODES + 1)]
    return [p for p in paths if p.exists()]


def live_record_files(local: LocalNetwork, key: str) -> list[Path]:
    """The record files of ``key`` that hold a record, not a tombstone."""
    trusted = {local.publisher.name: local.publisher.public}
    return [p for p in record_files(local, key)
            if not open_record(trusted, key, p.read_bytes()).tombstone]


# --- the acceptance test ------------------------------------------------------------------


async def test_gc_removes_an_unreferenced_chunk_and_keeps_a_shared_one(
        net: NetworkClient, publisher: Publisher) -> None:
    shared = payload(1001, 150_000)
    data_a = shared + payload(1002, 100_000)
    data_b = shared + payload(1003, 100_000)
    key_a, key_b = record_key(1001), record_key(1002)
    man_a = await publish(net, publisher, key_a, data_a, age=10 * DAY)
    man_b = await publish(net, publisher, key_b, data_b)
    roots_a = {c.root for c in man_a.chunks}
    roots_b = {c.root for c in man_b.chunks}
    assert roots_a & roots_b, "the payloads share no chunk"
    assert roots_a - roots_b, "A has no chunk of its own"
    before = held(await shards_by_node(net))
    assert stripe_ids(man_a) | stripe_ids(man_b) <= before

    report = await gc(net, publisher, max_age=DAY, grace=0)

    assert [(e.key, e.reason.split(":")[0]) for e in report.expired
            if e.key in (key_a, key_b)] == [(key_a, "age")]
    assert report.swept and not report.skipped
    after = held(await shards_by_node(net))
    a_only = stripe_ids(man_a, roots_a - roots_b)
    assert not a_only & after, "A's own chunks left shards behind"
    assert stripe_ids(man_b) <= after, "a shard of B (or of the shared chunk) went"
    assert a_only <= set().union(*deleted_ids(report).values())
    with pytest.raises(NotFoundError):
        await fetch_record(net, key_a)
    assert await read_record(net, key_b) == data_b


# --- a report of bounded size -------------------------------------------------------------


async def test_a_report_names_at_most_its_limit_and_counts_everything(
        net: NetworkClient, publisher: Publisher, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the limit (here 1), the report names that many expired records and deleted
    shards per node, and its totals (and the CLI's text) count every one."""
    monkeypatch.setattr(gc_report, "REPORT_LIMIT", 1)
    keys = [record_key(1501 + i) for i in range(3)]
    for i, key in enumerate(keys):
        await publish(net, publisher, key, payload(1501 + i, 40_000), age=10 * DAY)

    dry = await gc(net, publisher, max_age=DAY, dry_run=True)

    assert dry.expired_total >= 3 and len(dry.expired) == 1
    swept = [s for s in dry.nodes.values() if s.deleted_count > 1]
    assert swept, "no node has more than one shard to delete"
    assert all(len(s.deleted) == 1 and s.deleted_bytes >= s.deleted[0].size for s in swept)
    assert dry.deleted_shards == sum(s.deleted_count for s in dry.nodes.values())
    doc = dry.to_json()
    assert doc["expired_total"] == dry.expired_total and len(doc["expired_records"]) == 1
    text = format_report(dry)
    assert f"{dry.expired_total} records would be expired" in text
    assert f"... and {dry.expired_total - 1} more expired records" in text
    real = await gc(net, publisher, max_age=DAY)
    assert real.expired_total == dry.expired_total
    assert real.deleted_shards == dry.deleted_shards


# --- dry run, expiry by age and by last read ----------------------------------------------


async def test_dry_run_deletes_nothing_and_lists_what_a_real_run_deletes(
        net: NetworkClient, publisher: Publisher, local: LocalNetwork) -> None:
    orphan, _ = await store_payload(net, publisher, [payload(2001, 80_000)])
    old_key = record_key(2001)
    old = await publish(net, publisher, old_key, payload(2002, 60_000), age=40 * DAY)
    before = await shards_by_node(net)

    dry = await gc(net, publisher, max_age=30 * DAY, dry_run=True)

    assert await shards_by_node(net) == before
    assert live_record_files(local, old_key), "a dry run deleted the record"
    would = deleted_ids(dry)
    assert stripe_ids(orphan) | stripe_ids(old) <= held(would)
    (expired,) = [e for e in dry.expired if e.key == old_key]
    assert expired.reason.startswith("age: created 40.0 d ago")
    assert dry.to_json()["dry_run"] is True
    assert dry.to_json()["deleted_shards"] == sum(len(ids) for ids in would.values())

    real = await gc(net, publisher, max_age=30 * DAY)

    assert deleted_ids(real) == would
    assert [e.key for e in real.expired] == [e.key for e in dry.expired]
    assert record_files(local, old_key) and live_record_files(local, old_key) == []
    assert not held(would) & held(await shards_by_node(net))


async def test_expiry_by_last_read(net: NetworkClient, publisher: Publisher,
                                   local: LocalNetwork) -> None:
    unread, read = record_key(3001), record_key(3002)
    await publish(net, publisher, unread, payload(3001, 30_000))
    await publish(net, publisher, read, payload(3002, 30_000))
    long_ago = time.time() - 2 * DAY
    for key in (unread, read):
        for path in record_files(local, key):
            os.utime(path, (long_ago, path.stat().st_mtime))
    await fetch_record(net, read)  # a reader: moves the atime of what it fetched

    for _ in range(2):  # the collector's own reads do not count as reads
        dry = await gc(net, publisher, max_idle=DAY, dry_run=True)
        assert [e.key for e in dry.expired if e.key in (unread, read)] == [unread]
        (expired,) = [e for e in dry.expired if e.key == unread]
        assert expired.reason.startswith("idle: last read 2.0 d ago (max 1.0 d)")

    real = await gc(net, publisher, max_idle=DAY)
    assert unread in {e.key for e in real.expired}
    assert live_record_files(local, unread) == []
    with pytest.raises(NotFoundError):
        await fetch_record(net, unread)
    assert await read_record(net, read) == payload(3002, 30_000)


async def test_a_record_replaced_after_it_was_read_survives(
        net: NetworkClient, publisher: Publisher, monkeypatch: pytest.MonkeyPatch) -> None:
    """A newer record of the key lands on the arbiter between the collector's read and
    its tombstone: the arbiter refuses the tombstone (409), nothing else is written,
    and the record and its stripes stay."""
    key = record_key(3501)
    data = payload(3501, 30_000)
    manifest = await publish(net, publisher, key, data, age=10 * DAY)
    fresh = seal_record(publisher, key, b"meta", manifest, created=int(time.time()) + 60)
    replicas = record_nodes(net.network.nodes, key)[:net.network.record_replicas]
    target = net.nodes[replicas[0].id]
    original = target.put_record

    async def replaced_first(key_: str, data_: bytes, signer: Publisher) -> int:
        if key_ == key:
            await original(key_, fresh, signer)  # a newer push landed meanwhile
        return await original(key_, data_, signer)

    monkeypatch.setattr(target, "put_record", replaced_first)
    report = await gc(net, publisher, max_age=DAY, grace=0)
    assert key not in {e.key for e in report.expired}
    assert {(k.node, k.reason) for k in report.kept_records if k.key == key} == {
        (node.id, "a newer version was written since it was read") for node in replicas}
    monkeypatch.undo()
    assert await read_record(net, key) == data


async def test_a_node_that_missed_the_deletion_cannot_bring_it_back(
        net: NetworkClient, publisher: Publisher, local: LocalNetwork) -> None:
    """A replica down while gc writes the tombstone comes back with the old record:
    readers still see the key deleted, and the next collection replaces its copy."""
    key = record_key(3601)
    await publish(net, publisher, key, payload(3601, 30_000), age=10 * DAY)
    replicas = [n.id for n in record_nodes(net.network.nodes, key)]
    number = int(replicas[1].split("-")[1])
    local.nodes[number - 1].kill()
    try:
        report = await gc(net, publisher, max_age=DAY, grace=DAY)  # sweeps nothing young
        assert key in {e.key for e in report.expired}
    finally:
        local.restart_node(number)
    assert [p.parent.parent.name for p in live_record_files(local, key)] == [replicas[1]]
    with pytest.raises(NotFoundError):
        await fetch_record(net, key)
    found = await scanned(net, key)
    assert found is not None and found.newest is not None and found.newest.tombstone
    await gc(net, publisher, grace=DAY)
    assert live_record_files(local, key) == []
    assert replicas[1] in [p.parent.parent.name for p in record_files(local, key)]


# --- racing a push ------------------------------------------------------------------------


def node_logs(local: LocalNetwork) -> dict[Path, int]:
    return {p.log_path: p.log_path.stat().st_size for p in local.nodes}


def logged_since(marks: dict[Path, int]) -> str:
    text = ""
    for path, size in marks.items():
        with open(path, "rb") as fh:
            fh.seek(size)
            text += fh.read().decode(errors="replace")
    return text


async def test_gc_racing_a_push_deletes_none_of_its_shards(
        net: NetworkClient, publisher: Publisher, local: LocalNetwork,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the collector's shard listing and its deletes, a push reuses orphaned
    chunks (touching them) and writes new ones; its record lands after the collection."""
    old_part = payload(4001, 120_000)
    orphan, _ = await store_payload(net, publisher, [old_part])  # pushed, never published
    data = old_part + payload(4002, 60_000)
    pushed: list[tuple[Manifest, float | None]] = []
    started: list[bool] = []
    done = asyncio.Event()
    originals = {node_id: client.delete_shard for node_id, client in net.nodes.items()}

    def push_then_delete(node_id: str) -> Callable[..., Awaitable[bool]]:
        # The sweep deletes as it walks the listings: the push runs before the first
        # delete leaves (after that node's listing page was read), and every delete
        # waits for it, so the listing is the collector's and the deletes come after.
        async def delete_shard(shard_id: str, before: float, signer: Publisher) -> bool:
            if not started:  # once, before the first delete
                started.append(True)
                manifest, stats = await store_payload(net, publisher, [data])
                pushed.append((manifest, stats.touched_at))
                done.set()
            await done.wait()
            return await originals[node_id](shard_id, before, signer)
        return delete_shard

    for node_id, client in net.nodes.items():
        monkeypatch.setattr(client, "delete_shard", push_then_delete(node_id))
    marks = node_logs(local)
    report = await gc(net, publisher, grace=0)

    ((manifest, touched_at),) = pushed
    reused = stripe_ids(manifest, {c.root for c in orphan.chunks})
    assert reused, "the push reused no orphaned chunk"
    assert not stripe_ids(manifest) & set().union(*deleted_ids(report).values())
    assert sum(s.kept_recent for s in report.nodes.values()) >= len(reused)
    assert "412 shard" in logged_since(marks), "no delete met a touched shard"
    assert stripe_ids(manifest) <= held(await shards_by_node(net))
    key = record_key(4001)
    await publish_record(net, publisher, key, b"meta", manifest, touched_at=touched_at)
    assert await read_record(net, key) == data


async def test_recent_unreferenced_shards_are_kept_within_the_grace(
        net: NetworkClient, publisher: Publisher, local: LocalNetwork) -> None:
    recent, _ = await store_payload(net, publisher, [payload(4501, 40_000)])
    stale, _ = await store_payload(net, publisher, [payload(4502, 40_000)])
    long_ago = time.time() - 2 * DAY
    for sid in stripe_ids(stale):
        for i in range(1, NODES + 1):
            path = local.node_dir(i) / "shards" / sid[:2] / sid
            if path.exists():
                os.utime(path, (long_ago, long_ago))

    report = await gc(net, publisher, grace=DAY)

    gone = set().union(*deleted_ids(report).values())
    assert stripe_ids(stale) <= gone
    assert not stripe_ids(recent) & gone
    assert stripe_ids(recent) <= held(await shards_by_node(net))
    assert sum(s.kept_recent for s in report.nodes.values()) >= len(stripe_ids(recent))


# --- an incomplete inventory --------------------------------------------------------------


async def test_a_node_down_deletes_no_shards_without_force(
        net: NetworkClient, publisher: Publisher, local: LocalNetwork) -> None:
    orphan, _ = await store_payload(net, publisher, [payload(5001, 60_000)])
    listing = await shards_by_node(net)
    on_live_nodes = stripe_ids(orphan) & set().union(
        *(ids for node_id, ids in listing.items() if node_id != f"node-{NODES}"))
    assert on_live_nodes and on_live_nodes != stripe_ids(orphan)
    local.nodes[-1].kill()
    try:
        report = await gc(net, publisher, grace=0)
        assert not report.swept and report.deleted_shards == 0
        assert any(f"node node-{NODES} could not list its records" in s for s in report.skipped)
        assert any("no shard deleted" in s for s in report.skipped)
        assert on_live_nodes <= held(await shards_by_node_up(net, local))

        forced = await gc(net, publisher, grace=0, force=True)
        assert forced.swept and forced.deleted_shards > 0
        assert "not swept" in forced.nodes[f"node-{NODES}"].errors[0]
        assert not on_live_nodes & held(await shards_by_node_up(net, local))
    finally:
        local.restart_node(NODES)


async def shards_by_node_up(net: NetworkClient, local: LocalNetwork) -> dict[str, set[str]]:
    up = {p.name for p in local.nodes if p.running}
    return {node_id: {s.id for s in await client.list_shards()}
            for node_id, client in net.nodes.items() if node_id in up}


async def test_an_unreadable_record_deletes_no_shards_without_force(
        net: NetworkClient, publisher: Publisher, local: LocalNetwork) -> None:
    orphan, _ = await store_payload(net, publisher, [payload(5501, 40_000)])
    junk = local.node_dir(1) / "records" / record_key(5501)
    junk.write_bytes(b"not a record")
    try:
        report = await gc(net, publisher, grace=0)
        assert not report.swept
        assert any(f"record {record_key(5501)} could not be opened" in s for s in report.skipped)
        assert stripe_ids(orphan) <= held(await shards_by_node(net))
    finally:
        junk.unlink()

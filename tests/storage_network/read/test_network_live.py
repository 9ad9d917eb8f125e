"""Publish and fetch against real node processes (one shared 6-node network, k=4, m=2).

No test here kills a node; each uses its own payload and record key.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.client import NetworkClient
from storage_network.errors import ChunkUnavailableError, NodeError, NotFoundError
from storage_network.nodes.placement import record_nodes, shard_nodes
from storage_network.read.plan import plan_fetch
from storage_network.read.record_lookup import fetch_record
from storage_network.read.stream import stream_payload
from storage_network.wire.manifest import ChunkRef, make_manifest
from storage_network.wire.record import seal_record
from storage_network.wire.stripe import shard_id
from storage_network.wire.write_auth import Publisher
from storage_network.write.publish import publish_record, store_payload
from tests.support.zstd import unzstd

from ..conftest import SMALL_CHUNKS, K, M, payload, read_back, record_key

PREFETCH = 8  # chunks a read of this module fetches ahead


def pieces(data: bytes, size: int = 10_000) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def shard_file(local: LocalNetwork, node_id: str, sid: str) -> Path:
    return local.root / node_id / "shards" / sid[:2] / sid


async def test_round_trip(live_net: LocalNetwork, net: NetworkClient,
                          publisher: Publisher) -> None:
    data = payload(1, 300_000)
    key = record_key(1)
    manifest, stats = await store_payload(net, publisher, pieces(data))
    assert (manifest.codec, manifest.k, manifest.m) == ("isa_l_rs_cauchy", K, M)
    assert manifest.size == len(data) == stats.payload_bytes
    assert stats.chunks == len(manifest.chunks) > 10
    for ref in manifest.chunks[:-1]:
        assert SMALL_CHUNKS.min_size <= ref.size <= SMALL_CHUNKS.max_size
    assert stats.chunks_reused == 0 and stats.reused_bytes == 0
    assert stats.stored_bytes > manifest.stored_size * (K + M) / K

    # every shard sits on its node of the chunk's ranking
    nodes = net.network.nodes
    for ref in manifest.chunks:
        for index, node in enumerate(shard_nodes(nodes, ref.chunk_id, K + M)):
            assert shard_file(live_net, node.id, shard_id(ref.root, index)).is_file()

    metadata = b"StorePath: /nix/store/abc-test\nNarSize: 300000\n"
    size = await publish_record(net, publisher, key, metadata, manifest)
    assert size == len(seal_record(publisher, key, metadata, manifest))
    ranked = [n.id for n in record_nodes(nodes, key)]
    holders = [nid for nid in ranked if (live_net.root / nid / "records" / key).is_file()]
    assert holders == ranked[:net.network.record_replicas]

    record = await fetch_record(net, key)
    assert record.key == key
    assert record.metadata == metadata
    assert record.manifest == manifest
    assert record.publisher == publisher.public
    assert await read_back(net, record.manifest, PREFETCH) == data


async def test_prefetch_window_does_not_change_the_stream(net: NetworkClient,
                                                          publisher: Publisher) -> None:
    data = payload(2, 150_000)
    manifest, _ = await store_payload(net, publisher, [data])
    assert await read_back(net, manifest, prefetch=1) == data
    assert await read_back(net, manifest, prefetch=100) == data


async def test_empty_payload(net: NetworkClient, publisher: Publisher) -> None:
    manifest, stats = await store_payload(net, publisher, [])
    assert manifest.chunks == () and stats.chunks == 0 and stats.stored_bytes == 0
    await publish_record(net, publisher, record_key(3), b"empty", manifest)
    record = await fetch_record(net, record_key(3))
    assert record.manifest == manifest
    assert await read_back(net, manifest, PREFETCH) == b""


async def test_second_store_reuses_every_chunk(net: NetworkClient, publisher: Publisher) -> None:
    data = payload(4, 250_000)
    first, stats1 = await store_payload(net, publisher, pieces(data))
    second, stats2 = await store_payload(net, publisher, pieces(data, 7777))
    assert second == first
    assert stats2.chunks == stats1.chunks == len(first.chunks)
    assert stats2.chunks_reused == stats2.chunks
    assert stats2.stored_bytes == 0
    assert stats2.reused_bytes == stats1.stored_bytes > 0


async def test_half_shared_payload_reuses_those_chunks(net: NetworkClient,
                                                       publisher: Publisher) -> None:
    first_data = payload(5, 400_000)
    second_data = first_data[:200_000] + payload(6, 200_000)
    first, stats1 = await store_payload(net, publisher, pieces(first_data))
    second, stats2 = await store_payload(net, publisher, pieces(second_data))
    old_ids = {c.chunk_id for c in first.chunks}
    shared = [c for c in second.chunks if c.chunk_id in old_ids]
    assert stats2.chunks == len(second.chunks)
    assert stats2.chunks_reused == len(shared)
    assert len(shared) >= 0.35 * len(second.chunks), (len(shared), len(second.chunks))
    # the shared chunks are the leading ones, up to the edit
    assert second.chunks[:len(shared)] == first.chunks[:len(shared)]
    assert 0 < stats2.stored_bytes < 0.75 * stats1.stored_bytes
    assert await read_back(net, second, PREFETCH) == second_data


async def test_fetch_absent_record(net: NetworkClient) -> None:
    key = record_key(7)
    with pytest.raises(NotFoundError, match=f"record {key}: absent on 3 of the 3 nodes asked"):
        await fetch_record(net, key)


async def test_record_of_untrusted_publisher_is_not_served(net: NetworkClient,
                                                           publisher: Publisher) -> None:
    key = record_key(8)
    manifest, _ = await store_payload(net, publisher, [payload(8, 20_000)])
    await publish_record(net, publisher, key, b"md", manifest)
    other, _ = new_publisher("someone-else-1")
    with pytest.raises(NotFoundError):
        await fetch_record(net, key, trusted={other.name: other.public})
    assert (await fetch_record(net, key, trusted={publisher.name: publisher.public})).key == key


async def test_node_serving_corrupted_shards_is_logged_and_bypassed(
        live_net: LocalNetwork, net: NetworkClient, publisher: Publisher,
        caplog: pytest.LogCaptureFixture) -> None:
    data = payload(9, 250_000)
    manifest, _ = await store_payload(net, publisher, pieces(data))
    nodes = net.network.nodes
    victim = shard_nodes(nodes, manifest.chunks[0].chunk_id, K + M)[0].id
    data_shards_on_victim = 0
    for ref in manifest.chunks:
        index = [n.id for n in shard_nodes(nodes, ref.chunk_id, K + M)].index(victim)
        data_shards_on_victim += index < K
        path = shard_file(live_net, victim, shard_id(ref.root, index))
        body = bytearray(path.read_bytes())
        body[-1] ^= 0xFF
        body[len(body) // 2] ^= 0xFF
        path.write_bytes(bytes(body))
    assert data_shards_on_victim >= 1

    caplog.set_level(logging.WARNING, logger="nixshard.network")
    assert await read_back(net, manifest, PREFETCH) == data
    messages = [r.getMessage() for r in caplog.records if r.name == "nixshard.network"]
    bad = [msg for msg in messages if "served bad data" in msg and " benched " not in msg]
    benched = [msg for msg in messages if " benched " in msg]
    assert len(benched) == 1 and benched[0].startswith(f"node {victim} benched for 300 s: ")
    # each bad shard is replaced by another one; once benched, the victim is
    # asked last, so later chunks need not ask it at all
    assert 1 <= len(bad) <= data_shards_on_victim
    assert all(msg.startswith(f"node {victim} served bad data for shard ") for msg in bad)
    assert all("does not match stripe root" in msg for msg in bad)
    status = net.health.status(victim)
    assert status.benched and status.shards_served == 0
    assert status.reason is not None and status.reason.startswith("served bad data for shard ")


async def test_node_client_calls(live_net: LocalNetwork, net: NetworkClient,
                                 publisher: Publisher) -> None:
    manifest, _ = await store_payload(net, publisher, [payload(10, 30_000)])
    ref = manifest.chunks[0]
    node = shard_nodes(net.network.nodes, ref.chunk_id, K + M)[2]
    client = net.nodes[node.id]
    sid = shard_id(ref.root, 2)
    body = shard_file(live_net, node.id, sid).read_bytes()
    assert await client.get_shard(sid, len(body)) == body
    assert await client.put_shard(sid, body, publisher) is False  # already held
    absent = shard_id(bytes(32), 0)
    assert await client.get_shard(absent, 1 << 20) is None
    assert await client.has([sid, absent]) == {sid}
    assert await client.has([]) == set()
    assert await client.get_record(record_key(11)) is None
    health = await client.health()
    assert health["node_id"] == node.id
    stranger, _ = new_publisher("stranger-1")
    with pytest.raises(NodeError, match=rf"node {node.id}: PUT /shards/{sid} -> 403"):
        await client.put_shard(sid, body, stranger)
    with pytest.raises(NodeError, match=rf"node {node.id}: PUT /shards/{absent} -> 422"):
        await client.put_shard(absent, body, publisher)


async def test_missing_shard_file_is_logged_and_bypassed(
        live_net: LocalNetwork, net: NetworkClient, publisher: Publisher,
        caplog: pytest.LogCaptureFixture) -> None:
    data = payload(12, 60_000)
    manifest, _ = await store_payload(net, publisher, [data])
    plan = await plan_fetch(net, manifest)  # every shard claimed
    ref = manifest.chunks[0]
    (holder,) = plan.holders[0][1]
    sid = shard_id(ref.root, 1)
    shard_file(live_net, holder.id, sid).unlink()  # gone after the plan was made
    caplog.set_level(logging.WARNING, logger="nixshard.network")
    frames = [frame async for frame in stream_payload(net, plan)]
    assert unzstd(b"".join(frames)) == data
    assert f"node {holder.id} claimed shard {sid[:20]} but does not serve it" in caplog.text
    # a new plan no longer lists the missing shard
    assert 1 not in (await plan_fetch(net, manifest)).holders[0]


async def test_bad_record_on_one_replica_is_logged_and_skipped(
        live_net: LocalNetwork, net: NetworkClient, publisher: Publisher,
        caplog: pytest.LogCaptureFixture) -> None:
    key = record_key(13)
    manifest, _ = await store_payload(net, publisher, [payload(13, 20_000)])
    await publish_record(net, publisher, key, b"good metadata", manifest)
    first = record_nodes(net.network.nodes, key)[0].id
    path = live_net.root / first / "records" / key
    tampered = path.read_bytes().replace(b"good metadata", b"evil metadata")
    path.write_bytes(tampered)
    caplog.set_level(logging.WARNING, logger="nixshard.network")
    net.hedge_after = 60.0  # wait for every replica, however loaded the machine
    record = await fetch_record(net, key)
    assert record.metadata == b"good metadata"
    assert f"node {first} served a bad record for {key}" in caplog.text
    assert "bad signature" in caplog.text


async def test_plan_for_more_shards_than_nodes(net: NetworkClient) -> None:
    ref = ChunkRef(bytes(32), bytes(32), 10, 10)
    manifest = make_manifest("isa_l_rs_cauchy", 6, 2, [ref])
    with pytest.raises(ChunkUnavailableError,
                       match="manifest wants 8 shards a chunk, the network has 6 nodes"):
        await plan_fetch(net, manifest)


async def test_plan_for_shards_no_node_holds(net: NetworkClient) -> None:
    refs = [ChunkRef(bytes([i]) * 32, bytes([i]) * 32, 10, 10) for i in range(3)]
    with pytest.raises(ChunkUnavailableError,
                       match=r"chunk 0 of 3: 0 of 6 shards reachable, 4 needed "
                             r"\(unreachable nodes: none\)"):
        await plan_fetch(net, make_manifest("isa_l_rs_cauchy", K, M, refs))

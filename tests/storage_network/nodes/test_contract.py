"""The NodeStore contract (storage_network/nodes/base.py), run against every kind of node.

Each test talks to a live node of each kind through the registry (the node
URL in a one-node network file picks the kind): our node as a real process,
a bucket on a real SeaweedFS server.  Every behaviour readers, writers,
audit, repair and gc rely on is here; a new kind of node passes this suite
before anything else uses it.

Times: bucket mtimes have one-second resolution, so the tests that compare
against a "before" time leave more than a second on each side.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator

import pytest

from storage_network import NetworkClient, NodeError, NodeStore
from storage_network.coding.codec import EncodedChunk, StripeCodec
from storage_network.config import init_network
from storage_network.errors import NodeAnswerError, NodeStatusError
from storage_network.nodes.base import READ_TIME_RESOLUTION_SECONDS
from storage_network.nodes.listing_pages import walk_records, walk_shards
from storage_network.wire.manifest import make_manifest
from storage_network.wire.proofs import check_answer
from storage_network.wire.record import seal_record, seal_tombstone
from storage_network.wire.stripe import shard_id
from storage_network.wire.write_auth import Publisher

from .conftest import NodeUnderTest, dead_url

CODEC = StripeCodec(2, 1)


def new_chunk(size: int = 20_000) -> EncodedChunk:
    """A fresh chunk (random bytes, so no test shares a shard id with another)."""
    return CODEC.encode(os.urandom(size))


def shards_of(chunk: EncodedChunk) -> list[tuple[str, bytes]]:
    return [(shard_id(chunk.ref.root, i), body) for i, body in enumerate(chunk.bodies)]


def new_key() -> str:
    alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
    raw = os.urandom(32)
    return "".join(alphabet[b % 32] for b in raw)


def a_record(publisher: Publisher, key: str, created: int, chunk: EncodedChunk | None = None,
             metadata: bytes = b"meta") -> bytes:
    chunk = chunk or new_chunk(5000)
    return seal_record(publisher, key, metadata, make_manifest("isa_l_rs_cauchy", 2, 1,
                                                               [chunk.ref]), created)


@pytest.fixture
async def store(node: NodeUnderTest) -> AsyncIterator[NodeStore]:
    async with NetworkClient(node.network, timeout=10.0) as net:
        (only,) = net.nodes.values()
        yield only


# --- shards ---------------------------------------------------------------------------------


async def test_put_get_shard_is_idempotent(store: NodeStore, node: NodeUnderTest) -> None:
    (sid, body), *_ = shards_of(new_chunk())
    assert await store.put_shard(sid, body, node.publisher) is True
    assert await store.put_shard(sid, body, node.publisher) is False
    assert await store.get_shard(sid, len(body)) == body


async def test_absent_shard_is_none_not_an_error(store: NodeStore) -> None:
    (sid, body), *_ = shards_of(new_chunk())
    assert await store.get_shard(sid, len(body)) is None
    assert await store.has([sid]) == set()
    assert await store.get_shards([sid], [len(body)]) == [None]


async def test_a_shard_over_its_limit_is_a_malformed_answer(store: NodeStore,
                                                            node: NodeUnderTest) -> None:
    (sid, body), *_ = shards_of(new_chunk())
    await store.put_shard(sid, body, node.publisher)
    with pytest.raises(NodeAnswerError):
        await store.get_shard(sid, len(body) - 1)
    with pytest.raises(NodeAnswerError):
        await store.get_shards([sid], [len(body) - 1])


async def test_batches_keep_order_and_name_new_ids(store: NodeStore, node: NodeUnderTest) -> None:
    shards = shards_of(new_chunk()) + shards_of(new_chunk())
    first = shards[:3]
    assert await store.put_shards(first, node.publisher) == {sid for sid, _ in first}
    assert await store.put_shards(shards, node.publisher) == {sid for sid, _ in shards[3:]}
    absent = shards_of(new_chunk())[0]
    ids = [sid for sid, _ in shards] + [absent[0]]
    got = await store.get_shards(ids, [len(b) for _, b in shards] + [len(absent[1])])
    assert [None if g is None else bytes(g) for g in got] == [b for _, b in shards] + [None]
    assert await store.has(ids) == {sid for sid, _ in shards}


async def test_listing_names_every_shard_with_its_size(store: NodeStore,
                                                       node: NodeUnderTest) -> None:
    shards = shards_of(new_chunk())
    await store.put_shards(shards, node.publisher)
    listed = {row.id: row for row in await store.list_shards()}
    for sid, body in shards:
        assert listed[sid].size == len(body)
        assert abs(listed[sid].mtime - time.time()) < 120


async def test_shard_listing_pages_continue_after_a_name(store: NodeStore,
                                                         node: NodeUnderTest) -> None:
    await store.put_shards(shards_of(new_chunk()) + shards_of(new_chunk()), node.publisher)
    every = [row.id for row in await store.list_shards()]
    assert every == sorted(every) and len(every) >= 6
    assert [row.id for row in await store.list_shards(every[1], 3)] == every[2:5]
    assert await store.list_shards(every[-1], 5) == []
    assert [row.id async for row in walk_shards(store, page=2)] == every


async def test_conditional_delete_keeps_a_shard_written_after_the_limit(
        store: NodeStore, node: NodeUnderTest) -> None:
    before = time.time() - 2
    (sid, body), *_ = shards_of(new_chunk())
    await store.put_shard(sid, body, node.publisher)
    assert await store.delete_shard(sid, before, node.publisher) is False
    assert await store.get_shard(sid, len(body)) == body
    assert await store.delete_shard(sid, time.time() + 2, node.publisher) is True
    assert await store.get_shard(sid, len(body)) is None
    assert await store.delete_shard(sid, time.time() + 2, node.publisher) is False


async def test_touch_saves_a_shard_from_a_gc_that_started_before(
        store: NodeStore, node: NodeUnderTest) -> None:
    (sid, body), *_ = shards_of(new_chunk())
    await store.put_shard(sid, body, node.publisher)
    await asyncio.sleep(2.2)
    gc_started = time.time() - 1.1
    assert await store.has([sid], touch=node.publisher) == {sid}
    assert await store.delete_shard(sid, gc_started, node.publisher) is False
    listed = {row.id: row for row in await store.list_shards()}
    assert listed[sid].mtime >= gc_started
    assert await store.get_shard(sid, len(body)) == body


async def test_proofs_verify_for_held_shards_and_mark_absent_ones(
        store: NodeStore, node: NodeUnderTest) -> None:
    shards = shards_of(new_chunk(50_000))
    await store.put_shards(shards[:2], node.publisher)
    nonce = os.urandom(16)
    ids = [sid for sid, _ in shards]
    outcomes = check_answer(nonce, ids, await store.prove(nonce, ids))
    assert [(o.present, o.held) for o in outcomes] == [(True, True), (True, True),
                                                       (False, False)]


# --- records --------------------------------------------------------------------------------


async def test_records_keep_the_newest_version(store: NodeStore, node: NodeUnderTest) -> None:
    key, chunk, now = new_key(), new_chunk(5000), int(time.time())
    old = a_record(node.publisher, key, now - 100, chunk)
    new = a_record(node.publisher, key, now - 50, chunk, metadata=b"meta 2")
    assert await store.get_record(key) is None
    assert await store.put_record(key, old, node.publisher) == 201
    assert await store.put_record(key, old, node.publisher) == 200
    assert await store.put_record(key, new, node.publisher) == 200
    assert await store.get_record(key) == new
    with pytest.raises(NodeStatusError) as refused:
        await store.put_record(key, old, node.publisher)
    assert refused.value.status == 409
    assert await store.get_record(key) == new


async def test_a_record_of_other_content_is_refused(store: NodeStore, node: NodeUnderTest) -> None:
    key, now = new_key(), int(time.time())
    await store.put_record(key, a_record(node.publisher, key, now - 100), node.publisher)
    other = a_record(node.publisher, key, now - 10)  # another chunk: another payload
    with pytest.raises(NodeStatusError) as refused:
        await store.put_record(key, other, node.publisher)
    assert refused.value.status == 409


async def test_a_newer_tombstone_replaces_a_record(store: NodeStore, node: NodeUnderTest) -> None:
    key, now = new_key(), int(time.time())
    await store.put_record(key, a_record(node.publisher, key, now - 100), node.publisher)
    tomb = seal_tombstone(node.publisher, key, "isa_l_rs_cauchy", 2, 1, now - 10)
    assert await store.put_record(key, tomb, node.publisher) == 200
    assert await store.get_record(key) == tomb


async def test_record_delete_is_conditional_on_the_held_bytes(
        store: NodeStore, node: NodeUnderTest) -> None:
    key = new_key()
    data = a_record(node.publisher, key, int(time.time()) - 100)
    await store.put_record(key, data, node.publisher)
    assert await store.delete_record(key, hashlib.sha256(b"other").hexdigest(),
                                     node.publisher) is False
    assert await store.get_record(key) == data
    assert await store.delete_record(key, hashlib.sha256(data).hexdigest(),
                                     node.publisher) is True
    assert await store.get_record(key) is None
    assert await store.delete_record(key, hashlib.sha256(data).hexdigest(),
                                     node.publisher) is False


async def test_listing_names_records_and_peeks_keep_the_read_time(
        store: NodeStore, node: NodeUnderTest) -> None:
    key = new_key()
    data = a_record(node.publisher, key, int(time.time()) - 100)
    await store.put_record(key, data, node.publisher)
    first = {row.key: row for row in await store.list_records()}[key]
    assert first.size == len(data)
    await asyncio.sleep(1.2)
    assert await store.get_record(key, peek=True) == data
    peeked = {row.key: row for row in await store.list_records()}[key]
    assert peeked.atime == pytest.approx(first.atime, abs=0.01)
    read_at = time.time()
    assert await store.get_record(key) == data
    read = {row.key: row for row in await store.list_records()}[key]
    # a read moves the last-read time to now, once a minute at most (READ_TIME_RESOLUTION_SECONDS)
    assert read_at - READ_TIME_RESOLUTION_SECONDS <= read.atime <= time.time() + 1


async def test_record_listing_pages_continue_after_a_key(store: NodeStore,
                                                        node: NodeUnderTest) -> None:
    for _ in range(4):
        key = new_key()
        await store.put_record(key, a_record(node.publisher, key, int(time.time())),
                               node.publisher)
    every = await store.list_records()
    keys = [row.key for row in every]
    assert keys == sorted(keys) and len(keys) >= 4
    assert [row.key for row in await store.list_records(keys[0], 2)] == keys[1:3]
    assert await store.list_records(keys[-1], 5) == []
    walked = [row async for row in walk_records(store, page=3)]
    assert [row.key for row in walked] == keys
    assert [row.size for row in walked] == [row.size for row in every]


# --- health and failures --------------------------------------------------------------------


async def test_a_batch_read_answers_every_key_in_order_and_moves_no_read_time(
        store: NodeStore, node: NodeUnderTest) -> None:
    keys = [new_key() for _ in range(3)]
    datas = [a_record(node.publisher, key, int(time.time()) - 100) for key in keys[:2]]
    for key, data in zip(keys[:2], datas, strict=True):
        await store.put_record(key, data, node.publisher)
    before = {row.key: row.atime for row in await store.list_records()}
    await asyncio.sleep(1.2)
    asked = [keys[0], keys[2], keys[1], keys[0]]
    assert await store.get_records(asked) == [datas[0], None, datas[1], datas[0]]
    assert await store.get_records([]) == []
    after = {row.key: row.atime for row in await store.list_records()}
    assert [after[k] for k in keys[:2]] == pytest.approx([before[k] for k in keys[:2]],
                                                         abs=0.01)


async def test_health_answers(store: NodeStore) -> None:
    assert (await store.health()).get("status") == "ok"
    assert store.queued == 0


async def test_an_unreachable_node_raises_rather_than_saying_absent(
        node: NodeUnderTest) -> None:
    network = init_network([dead_url(node.url)], 1, 0, [node.publisher.public])
    async with NetworkClient(network, timeout=3.0) as net:
        (dead,) = net.nodes.values()
        (sid, body), *_ = shards_of(new_chunk())
        for call in (dead.get_shard(sid, len(body)), dead.has([sid]),
                     dead.get_record(new_key()), dead.list_shards(),
                     dead.put_shard(sid, body, node.publisher)):
            with pytest.raises(NodeError):
                await call

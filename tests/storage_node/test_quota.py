"""Per-publisher quotas on a node (storage_node.usage): who is charged, the 402 refusal
checked before anything is stored, reservations against concurrent writes, refunds,
and usage kept across a restart."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from nixshard.localnet import new_publisher
from storage_network.wire.shard_batch import encode_put_batch
from storage_network.wire.write_auth import Publisher
from storage_node.app import create_app
from storage_node.config import NodeConfig

from .samples import T0, chunk_refs, record, record_key, signed_headers, stripe, tombstone

Client = TestClient[web.Request, web.Application]
SHARD = 1000  # fragment bytes of the sample shards (a shard body is a little more)

Node = Callable[[dict[str, int]], Awaitable[Client]]


@pytest.fixture(scope="module")
def other() -> Publisher:
    """A second publisher the quota nodes accept."""
    return new_publisher("quota-other-1")[0]


@pytest.fixture
async def node(data_dir: Path, publisher: Publisher, other: Publisher
               ) -> AsyncIterator[Node]:
    """Starts an in-process node on ``data_dir`` with the given quotas (again after a
    stop: a restart on the same data)."""
    clients: list[Client] = []

    async def start(quotas: dict[str, int]) -> Client:
        for old in clients:
            await old.close()
        config = NodeConfig(data_dir, "node-1", {publisher.name: publisher.public,
                                                 other.name: other.public}, quotas=quotas)
        client = TestClient(TestServer(create_app(config)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def put_shard(client: Client, publisher: Publisher, sid: str, body: bytes
                    ) -> tuple[int, str]:
    path = f"/shards/{sid}"
    resp = await client.put(path, data=body, headers=signed_headers(publisher, "PUT", path, body))
    return resp.status, await resp.text()


async def put_record(client: Client, publisher: Publisher, key: str, data: bytes
                     ) -> tuple[int, str]:
    path = f"/records/{key}"
    resp = await client.put(path, data=data, headers=signed_headers(publisher, "PUT", path, data))
    return resp.status, await resp.text()


async def usage(client: Client) -> dict[str, int]:
    resp = await client.get("/healthz")
    doc = await resp.json()
    assert isinstance(doc["usage"], dict)
    return {str(name): int(size) for name, size in doc["usage"].items()}


async def test_over_quota_is_402_stating_usage_and_quota_and_stores_nothing(
        node: Node, publisher: Publisher) -> None:
    (a, body_a), (b, body_b), _ = stripe(size=SHARD)
    quota = len(body_a) + len(body_b) // 2
    client = await node({publisher.name: quota})
    assert (await put_shard(client, publisher, a, body_a))[0] == 201
    status, text = await put_shard(client, publisher, b, body_b)
    assert status == 402
    assert text == (f"error: quota exceeded: publisher {publisher.name} keeps {len(body_a)} "
                    f"bytes on node node-1, its quota is {quota} bytes; the write needs "
                    f"{len(body_b)} more")
    assert (await client.get(f"/shards/{b}")).status == 404
    assert await usage(client) == {publisher.name: len(body_a)}


async def test_a_refused_write_leaves_no_file(node: Node, publisher: Publisher,
                                              data_dir: Path) -> None:
    (a, body_a), *_ = stripe(size=SHARD)
    client = await node({publisher.name: 10})
    assert (await put_shard(client, publisher, a, body_a))[0] == 402
    assert list((data_dir / "tmp").iterdir()) == []
    assert not any((data_dir / "shards").rglob("*.*"))


async def test_first_writer_pays_a_second_identical_write_is_free(
        node: Node, publisher: Publisher, other: Publisher) -> None:
    (a, body_a), *_ = stripe(size=SHARD)
    client = await node({publisher.name: 10 * SHARD, other.name: 0})
    assert (await put_shard(client, publisher, a, body_a))[0] == 201
    # other's quota is 0, yet re-writing a held shard needs no room and is not charged
    assert (await put_shard(client, other, a, body_a))[0] == 200
    assert await usage(client) == {publisher.name: len(body_a)}


async def test_a_deleted_shard_refunds_its_payer(node: Node, publisher: Publisher) -> None:
    (a, body_a), (b, body_b), _ = stripe(size=SHARD)
    client = await node({publisher.name: 10 * SHARD})
    for sid, body in ((a, body_a), (b, body_b)):
        assert (await put_shard(client, publisher, sid, body))[0] == 201
    path = f"/shards/{a}?before={time.time() + 60:.3f}"
    resp = await client.delete(path, headers=signed_headers(publisher, "DELETE", path, b""))
    assert resp.status == 204
    assert await usage(client) == {publisher.name: len(body_b)}


async def test_batch_over_quota_stores_none_of_it(node: Node, publisher: Publisher) -> None:
    shards = stripe(n=3, size=SHARD)
    quota = sum(len(body) for _, body in shards) - 1
    client = await node({publisher.name: quota})
    body = encode_put_batch(shards)
    headers = signed_headers(publisher, "POST", "/shards/batch-put", body)
    resp = await client.post("/shards/batch-put", data=body, headers=headers)
    assert resp.status == 402
    assert f"its quota is {quota} bytes" in await resp.text()
    for sid, _ in shards:
        assert (await client.get(f"/shards/{sid}")).status == 404
    assert await usage(client) == {}


async def test_concurrent_writes_cannot_together_pass_the_quota(
        node: Node, publisher: Publisher) -> None:
    shards = [stripe(n=1, size=SHARD)[0] for _ in range(8)]
    size = len(shards[0][1])
    client = await node({publisher.name: 3 * size + size // 2})
    results = await asyncio.gather(*(put_shard(client, publisher, sid, body)
                                     for sid, body in shards))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 3 + [402] * 5
    assert await usage(client) == {publisher.name: 3 * size}


async def test_records_are_charged_and_replacements_refund(
        node: Node, publisher: Publisher, other: Publisher) -> None:
    key = record_key()
    refs = chunk_refs()
    first = record(publisher, key, refs=refs, created=T0)
    client = await node({publisher.name: len(first) + 10})
    assert (await put_record(client, publisher, key, first))[0] == 201
    assert await usage(client) == {publisher.name: len(first)}
    # a newer record of the same content (a renewal) replaces it: it needs only the bytes
    # it adds, and the old bytes are refunded
    renewed = record(publisher, key, refs=refs, created=T0 + 10)
    assert (await put_record(client, publisher, key, renewed))[0] == 200
    assert await usage(client) == {publisher.name: len(renewed)}
    # another record key does not fit
    another = record_key()
    status, text = await put_record(client, publisher, another, record(publisher, another))
    assert status == 402 and "quota exceeded" in text


async def test_a_tombstone_is_never_refused_for_quota(node: Node, publisher: Publisher) -> None:
    key = record_key()
    held = record(publisher, key, created=T0)
    client = await node({publisher.name: len(held)})
    assert (await put_record(client, publisher, key, held))[0] == 201
    assert (await put_record(client, publisher, key, tombstone(publisher, key, T0 + 1)))[0] \
        == 200
    charged = await usage(client)
    assert 0 < charged[publisher.name] < len(held)  # the tombstone's bytes only


async def test_publisher_without_quota_is_charged_not_refused(
        node: Node, publisher: Publisher, other: Publisher) -> None:
    shards = stripe(n=3, size=SHARD)
    client = await node({publisher.name: 1})
    for sid, body in shards:
        assert (await put_shard(client, other, sid, body))[0] == 201
    assert await usage(client) == {other.name: sum(len(body) for _, body in shards)}


async def test_usage_survives_a_restart_and_follows_the_disk(
        node: Node, publisher: Publisher, data_dir: Path) -> None:
    shards = stripe(n=3, size=SHARD)
    client = await node({publisher.name: 10 * SHARD})
    for sid, body in shards:
        assert (await put_shard(client, publisher, sid, body))[0] == 201
    key = record_key()
    data = record(publisher, key)
    assert (await put_record(client, publisher, key, data))[0] == 201
    total = sum(len(body) for _, body in shards) + len(data)
    assert await usage(client) == {publisher.name: total}

    client = await node({publisher.name: 10 * SHARD})  # restart on the same data
    assert await usage(client) == {publisher.name: total}

    # a shard lost while the node was down (an operator's rm, a disk repair) is no
    # longer charged after the next start
    lost_id, lost_body = shards[0]
    (data_dir / "shards" / lost_id[:2] / lost_id).unlink()
    client = await node({publisher.name: 10 * SHARD})
    assert await usage(client) == {publisher.name: total - len(lost_body)}


async def test_refusal_names_the_bytes_in_flight_only_once(node: Node,
                                                          publisher: Publisher) -> None:
    """After a refusal, room is not leaked: the same write fits once room is freed."""
    (a, body_a), (b, body_b), _ = stripe(size=SHARD)
    client = await node({publisher.name: len(body_a) + len(body_b) - 1})
    assert (await put_shard(client, publisher, a, body_a))[0] == 201
    for _ in range(3):
        assert (await put_shard(client, publisher, b, body_b))[0] == 402
    path = f"/shards/{a}?before={time.time() + 60:.3f}"
    resp = await client.delete(path, headers=signed_headers(publisher, "DELETE", path, b""))
    assert resp.status == 204
    assert (await put_shard(client, publisher, b, body_b))[0] == 201
    assert hashlib.sha256(await (await client.get(f"/shards/{b}")).read()).digest() \
        == hashlib.sha256(body_b).digest()

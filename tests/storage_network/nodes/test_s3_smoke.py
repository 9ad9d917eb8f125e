"""Smoke tests of the S3 node kind against a real SeaweedFS, beyond the contract suite:
the object layout, healing, client-side checks, hostile answers, URLs and credentials."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from nixshard.localnet import free_port, new_publisher
from nixshard.seaweed import SeaweedServer
from storage_network.coding.codec import StripeCodec
from storage_network.config import NodeInfo
from storage_network.errors import NodeAnswerError, NodeError, NodeStatusError, NodeTimeoutError
from storage_network.nodes.limits import Deadlines
from storage_network.nodes.registry import url_error
from storage_network.nodes.s3 import S3NodeStore
from storage_network.nodes.s3_transport import parse_s3_url
from storage_network.wire.stripe import shard_id

from .conftest import S3_PROFILE, s3_url
from .test_contract import a_record, new_key


def shards(count: int = 3) -> list[tuple[str, bytes]]:
    chunk = StripeCodec(2, 1).encode(os.urandom(30_000))
    return [(shard_id(chunk.ref.root, i), body) for i, body in enumerate(chunk.bodies)][:count]


@pytest.fixture
async def bucket(seaweed: SeaweedServer) -> AsyncIterator[S3NodeStore]:
    store = S3NodeStore(NodeInfo("s3-smoke", s3_url(seaweed, "smoke", "a/b")),
                        deadlines=Deadlines.within(10))
    yield store
    await store.close()


def test_urls_name_bucket_prefix_and_settings_but_never_credentials() -> None:
    where = parse_s3_url("s3://my-bucket/a/b/?endpoint=http://127.0.0.1:9000/&region=eu-1"
                         "&profile=ci")
    assert (where.bucket, where.prefix, where.endpoint, where.region, where.profile) == \
        ("my-bucket", "a/b", "http://127.0.0.1:9000", "eu-1", "ci")
    assert where.key("shards", "x.0") == "a/b/shards/x.0"
    assert parse_s3_url("s3://bkt").key("records") == "records/"
    for bad in ("s3://KEY:SECRET@bkt/p", "s3://bkt/p?endpoint=http://k:s@host:1",
                "s3://bkt/p?secret=x", "s3://bkt/p?region=a&region=b", "s3://bkt/../p",
                "s3://b/p", "s3://bkt/p#frag", "s3://bkt/p?endpoint=ftp://host"):
        assert url_error(bad) is not None, bad
    assert url_error("s3://bkt/p?endpoint=https://s3.example.org") is None


async def test_shards_live_under_the_prefix_and_conditional_deletes_refuse(
        bucket: S3NodeStore, seaweed: SeaweedServer) -> None:
    publisher, _ = new_publisher("smoke-1")
    (sid, body), (other, other_body), (absent, _) = shards()
    assert await bucket.put_shards([(sid, body), (other, other_body)], publisher) == {sid, other}
    raw = seaweed.client()
    assert raw.head_object(Bucket="smoke", Key=f"a/b/shards/{sid}")["ContentLength"] == len(body)
    assert await bucket.has([sid, other, absent]) == {sid, other}
    assert await bucket.get_shard(sid, len(body)) == body
    listed = {row.id: row for row in await bucket.list_shards()}
    assert listed[sid].size == len(body) and abs(listed[sid].mtime - time.time()) < 60
    assert await bucket.delete_shard(sid, time.time() - 5, publisher) is False
    await asyncio.sleep(2.1)
    touched_after = time.time() - 1
    assert await bucket.has([sid, absent], touch=publisher) == {sid}
    assert {r.id: r for r in await bucket.list_shards()}[sid].mtime >= touched_after
    assert await bucket.delete_shard(sid, touched_after, publisher) is False
    assert await bucket.delete_shard(sid, time.time() + 2, publisher) is True
    assert await bucket.has([sid, other]) == {other}


async def test_client_side_checks_and_healing(bucket: S3NodeStore,
                                              seaweed: SeaweedServer) -> None:
    publisher, _ = new_publisher("smoke-1")
    (sid, body), (other, _), _ = shards()
    with pytest.raises(NodeStatusError) as forged:
        await bucket.put_shard(other, body, publisher)  # the body of another id
    assert forged.value.status == 422
    with pytest.raises(NodeStatusError) as bad_id:
        await bucket.get_shard("../records/x", 10)
    assert bad_id.value.status == 400
    await bucket.put_shard(sid, body, publisher)
    seaweed.client().put_object(Bucket="smoke", Key=f"a/b/shards/{sid}", Body=b"rot" + body)
    with pytest.raises(NodeAnswerError):
        await bucket.get_shard(sid, len(body))
    assert await bucket.put_shard(sid, body, publisher) is True  # healed
    assert await bucket.get_shard(sid, len(body)) == body
    assert await bucket.put_shard(sid, body, publisher) is False


async def test_records_and_their_read_markers(bucket: S3NodeStore,
                                              seaweed: SeaweedServer) -> None:
    publisher, _ = new_publisher("smoke-1")
    key = new_key()
    data = a_record(publisher, key, int(time.time()) - 100)
    assert await bucket.put_record(key, data, publisher) == 201
    assert await bucket.get_record(key, peek=True) == data
    keys = {o["Key"] for o in seaweed.client().list_objects_v2(Bucket="smoke",
                                                               Prefix="a/b/")["Contents"]}
    assert f"a/b/records/{key}" in keys and f"a/b/reads/{key}" not in keys
    assert await bucket.get_record(key) == data
    seaweed.client().head_object(Bucket="smoke", Key=f"a/b/reads/{key}")
    assert {r.key for r in await bucket.list_records()} >= {key}
    assert await bucket.delete_record(key, hashlib.sha256(data).hexdigest(), publisher)
    assert await bucket.get_record(key) is None
    assert key not in {r.key for r in await bucket.list_records()}


async def test_hostile_answers_are_capped(seaweed: SeaweedServer) -> None:
    """An endpoint answering a 3 MiB listing page, a 404 with an endless body, or
    never answering a HEAD."""
    async def answer(request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            await asyncio.sleep(30)
        if request.method == "GET" and "list-type" in request.query:
            return web.Response(body=b"<x>" + b"a" * (3 << 20) + b"</x>")
        reply = web.StreamResponse(status=404)
        await reply.prepare(request)
        for _ in range(400):
            await reply.write(b"b" * (64 << 10))
        return reply

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"s3://hostile/p?endpoint=http://127.0.0.1:{port}&region=us-east-1&profile={S3_PROFILE}"
    store = S3NodeStore(NodeInfo("hostile", url), deadlines=Deadlines.within(1.5))
    try:
        with pytest.raises(NodeAnswerError):
            await store.list_shards()
        with pytest.raises(NodeAnswerError):
            await store.get_shard(shards(1)[0][0], 1000)
        started = time.monotonic()
        with pytest.raises(NodeTimeoutError) as slow:
            await store.has([sid for sid, _ in shards()])
        assert slow.value.blame == "node" and time.monotonic() - started < 5
    finally:
        await store.close()
        await runner.cleanup()


async def test_an_unknown_profile_is_a_node_error(seaweed: SeaweedServer) -> None:
    url = f"s3://smoke/p?endpoint={seaweed.endpoint}&profile=nobody-has-this"
    store = S3NodeStore(NodeInfo("no-profile", url))
    with pytest.raises(NodeError, match="no S3 client"):
        await store.health()


async def test_a_missing_bucket_is_a_failure_not_absence(seaweed: SeaweedServer) -> None:
    url = seaweed.node_url("never-created", "p", profile=S3_PROFILE)
    store = S3NodeStore(NodeInfo("no-bucket", url), deadlines=Deadlines.within(10))
    (sid, body), *_ = shards(1)
    try:
        with pytest.raises(NodeStatusError, match="NoSuchBucket"):
            await store.get_shard(sid, len(body))
        with pytest.raises(NodeStatusError, match="NoSuchBucket"):
            await store.get_record(new_key())
        with pytest.raises(NodeError):
            await store.health()
        # (no PUT here: SeaweedFS creates a missing bucket on the first PUT; AWS refuses it)
    finally:
        await store.close()

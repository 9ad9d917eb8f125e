"""Batched shard transfers of an in-process node (``POST /shards/batch-get`` and
``/shards/batch-put``, :mod:`storage_network.wire.shard_batch`): round trips and every refusal,
each leaving nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from storage_network.errors import ShardBatchError, ShardTooLargeError
from storage_network.wire.shard_batch import (
    encode_get_answer,
    encode_put_batch,
    parse_get_answer,
    parse_put_batch,
)
from storage_network.wire.write_auth import Publisher
from tests.support.shards import shard_files

from .conftest import MAX_SHARD
from .samples import signed_headers, stripe
from .test_shards import tmp_files

PUT_PATH = "/shards/batch-put"


async def batch_put(client: TestClient, publisher: Publisher, body: bytes):
    return await client.post(PUT_PATH, data=body,
                             headers=signed_headers(publisher, "POST", PUT_PATH, body))


async def batch_get(client: TestClient, ids: list[str]) -> list[bytes | None]:
    resp = await client.post("/shards/batch-get", json={"ids": ids})
    assert resp.status == 200, await resp.text()
    return parse_get_answer(await resp.read(), len(ids))


def test_put_batch_round_trips_and_get_answers_frame_absent_shards() -> None:
    shards = stripe(n=3)
    assert [(sid, bytes(body)) for sid, body in parse_put_batch(encode_put_batch(shards),
                                                                 MAX_SHARD)] == shards
    answer = b"".join(encode_get_answer(b) for b in (b"abc", None, b""))
    assert parse_get_answer(answer, 3) == [b"abc", None, b""]


@pytest.mark.parametrize(("data", "count", "message"), [
    (encode_get_answer(b"abc")[:5], 1, "cut short in entry 0"),
    (encode_get_answer(b"abc"), 2, "cut short at entry 1"),
    (encode_get_answer(b"abc") + b"x", 1, "1 bytes past"),
])
def test_malformed_get_answers_are_refused(data: bytes, count: int, message: str) -> None:
    with pytest.raises(ShardBatchError, match=message):
        parse_get_answer(data, count)


async def test_batch_put_stores_all_then_get_returns_them_in_order(
        client: TestClient, publisher: Publisher, data_dir: Path) -> None:
    shards = stripe(n=4)
    resp = await batch_put(client, publisher, encode_put_batch(shards[:2]))
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"created": [shards[0][0], shards[1][0]], "held": [],
                                 "healed": []}
    resp = await batch_put(client, publisher, encode_put_batch(shards))
    assert await resp.json() == {"created": [shards[2][0], shards[3][0]],
                                 "held": [shards[0][0], shards[1][0]], "healed": []}
    assert len(shard_files(data_dir)) == 4
    assert tmp_files(data_dir) == []
    (absent, _), *_ = stripe(n=1, size=999)
    ids = [shards[3][0], absent, shards[0][0]]
    assert await batch_get(client, ids) == [shards[3][1], None, shards[0][1]]
    assert (await client.get(f"/shards/{shards[2][0]}")).status == 200


def _mismatched() -> bytes:
    shards = stripe(n=3)
    body = bytearray(shards[1][1])
    body[-1] ^= 0xFF
    return encode_put_batch([shards[0], (shards[1][0], bytes(body)), shards[2]])


@pytest.mark.parametrize(("body", "status", "message"), [
    (encode_put_batch(stripe(n=2))[:-10], 400, "cut short in shard"),
    (b"\x05hello" + bytes(4), 400, "bad shard id 'hello'"),
    (encode_put_batch([(stripe(n=1)[0][0], bytes(MAX_SHARD + 1))]), 413, "exceeds the limit"),
    (_mismatched(), 422, "does not match its id"),
])
async def test_a_bad_batch_put_stores_none_of_its_shards(
        client: TestClient, publisher: Publisher, data_dir: Path, body: bytes, status: int,
        message: str) -> None:
    resp = await batch_put(client, publisher, body)
    assert resp.status == status
    assert message in await resp.text()
    assert shard_files(data_dir) == []
    assert tmp_files(data_dir) == []


async def test_batch_put_needs_an_accepted_signature(
        client: TestClient, publisher: Publisher, stranger: Publisher, data_dir: Path) -> None:
    body = encode_put_batch(stripe(n=2))
    assert (await client.post(PUT_PATH, data=body)).status == 401
    resp = await batch_put(client, stranger, body)
    assert resp.status == 403
    # signed for another body: the digest does not match
    other = signed_headers(publisher, "POST", PUT_PATH, body + b"x")
    assert (await client.post(PUT_PATH, data=body, headers=other)).status == 403
    assert shard_files(data_dir) == []


@pytest.mark.parametrize(("payload", "message"), [
    (b"not json", "not JSON"),
    (json.dumps({"ids": "x"}).encode(), "must be"),
    (json.dumps({"ids": ["../../etc/passwd"]}).encode(), "bad shard id"),
    (json.dumps({"ids": [f"{'a' * 64}.0"] * 10_001}).encode(), "at most 10000"),
])
async def test_batch_get_refuses_bad_requests(client: TestClient, payload: bytes,
                                              message: str) -> None:
    resp = await client.post("/shards/batch-get", data=payload)
    assert resp.status == 400
    assert message in await resp.text()


def test_put_batch_parsing_refuses_oversize_shards_and_too_many_ids() -> None:
    shards = stripe(n=3)
    with pytest.raises(ShardTooLargeError):
        list(parse_put_batch(encode_put_batch(shards), max_shard_bytes=10))
    with pytest.raises(ShardBatchError, match="more than 2 shards"):
        list(parse_put_batch(encode_put_batch(shards), MAX_SHARD, max_ids=2))

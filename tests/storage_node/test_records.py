"""Record endpoints of an in-process node: round trip, replacement and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from storage_network.wire.record import open_record
from storage_network.wire.shard_batch import parse_get_answer
from storage_network.wire.write_auth import Publisher

from .conftest import MAX_RECORD
from .samples import T0, chunk_refs, record, record_key, signed_headers


async def put(client: TestClient, publisher: Publisher, key: str, body: bytes):
    headers = signed_headers(publisher, "PUT", f"/records/{key}", body)
    return await client.put(f"/records/{key}", data=body, headers=headers)


def stored(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "records").iterdir())


async def test_round_trip_and_replacement(client: TestClient, publisher: Publisher,
                                          data_dir: Path) -> None:
    key = record_key()
    refs = chunk_refs(3)
    first = record(publisher, key, refs=refs, created=T0)
    resp = await put(client, publisher, key, first)
    assert resp.status == 201, await resp.text()
    assert await resp.json() == {"key": key, "created": True, "replaced": False,
                                 "tombstone": False, "bytes": len(first)}
    resp = await client.get(f"/records/{key}")
    assert resp.status == 200
    got = await resp.read()
    assert got == first
    opened = open_record({publisher.name: publisher.public}, key, got)
    assert len(opened.manifest.chunks) == 3

    # a newer record of the same content (other narinfo text) replaces it
    second = record(publisher, key, note="-2.0", refs=refs, created=T0 + 1)
    resp = await put(client, publisher, key, second)
    assert resp.status == 200
    assert (await resp.json())["created"] is False
    assert (await resp.json())["replaced"] is True
    assert await (await client.get(f"/records/{key}")).read() == second
    resp = await client.head(f"/records/{key}")
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(second)
    assert stored(data_dir) == [key]
    assert list((data_dir / "tmp").iterdir()) == []


async def test_absent_record_is_404(client: TestClient) -> None:
    key = record_key()
    resp = await client.get(f"/records/{key}")
    assert resp.status == 404
    assert await resp.text() == f"error: no record {key}"


@pytest.mark.parametrize("bad_key", [
    "A" * 32, "a" * 31, "a" * 33, "a" * 31 + "-", "..%2F..%2Fsecret", "a" * 32 + "%0A",
    "a" * 32 + "%2F..",
])
async def test_bad_record_key_is_400(client: TestClient, publisher: Publisher,
                                     bad_key: str) -> None:
    for resp in (await client.get(f"/records/{bad_key}"),
                 await put(client, publisher, bad_key, b"x")):
        assert resp.status == 400
        assert (await resp.text()).startswith("error: bad record key")


async def test_record_signed_by_unknown_key_is_422(client: TestClient, publisher: Publisher,
                                                   stranger: Publisher, data_dir: Path) -> None:
    key = record_key()
    resp = await put(client, publisher, key, record(stranger, key))
    assert resp.status == 422
    assert await resp.text() == (f"error: record {key} is signed by untrusted key "
                                 "'stranger-1'")
    assert (await client.get(f"/records/{key}")).status == 404
    assert stored(data_dir) == []


async def test_record_put_under_another_key_is_422(client: TestClient, publisher: Publisher,
                                                   data_dir: Path) -> None:
    key, other = record_key(), record_key()
    resp = await put(client, publisher, other, record(publisher, key))
    assert resp.status == 422
    assert "bad signature" in await resp.text()
    assert stored(data_dir) == []


@pytest.mark.parametrize("body, message", [
    (b"", "bad magic"),
    (b"hello world", "bad magic"),
    (b"nixshard-record-v2\n\x00", "truncated"),
])
async def test_malformed_record_is_422(client: TestClient, publisher: Publisher,
                                       data_dir: Path, body: bytes, message: str) -> None:
    key = record_key()
    resp = await put(client, publisher, key, body)
    assert resp.status == 422
    assert message in await resp.text()
    assert stored(data_dir) == []


async def test_record_write_needs_a_publisher_signature(client: TestClient, publisher: Publisher,
                                                        stranger: Publisher) -> None:
    key = record_key()
    body = record(publisher, key)
    assert (await client.put(f"/records/{key}", data=body)).status == 401
    assert (await put(client, stranger, key, body)).status == 403
    headers = signed_headers(publisher, "PUT", f"/records/{key}", body + b"x")
    resp = await client.put(f"/records/{key}", data=body, headers=headers)
    assert resp.status == 403
    assert (await client.get(f"/records/{key}")).status == 404


async def test_oversize_record_is_413(client: TestClient, publisher: Publisher,
                                      data_dir: Path) -> None:
    key = record_key()
    resp = await put(client, publisher, key, b"\0" * (MAX_RECORD + 1))
    assert resp.status == 413
    assert "exceeds the limit" in await resp.text()
    assert stored(data_dir) == []


async def test_batch_get_answers_each_key_in_order_and_moves_no_atime(
        client: TestClient, publisher: Publisher, data_dir: Path) -> None:
    keys = [record_key() for _ in range(3)]
    bodies = [record(publisher, key, created=T0) for key in keys[:2]]
    for key, body in zip(keys[:2], bodies, strict=True):
        assert (await put(client, publisher, key, body)).status == 201
    atimes = [(data_dir / "records" / k).stat().st_atime for k in keys[:2]]
    resp = await client.post("/records/batch-get", json={"keys": [keys[1], keys[2], keys[0]]})
    assert resp.status == 200
    assert parse_get_answer(await resp.read(), 3) == [bodies[1], None, bodies[0]]
    assert [(data_dir / "records" / k).stat().st_atime for k in keys[:2]] == atimes


@pytest.mark.parametrize(("payload", "status", "message"), [
    (b"not json", 400, "not JSON"),
    (json.dumps(["x"]).encode(), 400, "must be"),
    (json.dumps({"keys": "x"}).encode(), 400, "must be"),
    (json.dumps({"keys": ["../../etc/passwd"]}).encode(), 400, "bad record key"),
    (json.dumps({"keys": [7]}).encode(), 400, "a JSON number"),
    (json.dumps({"keys": ["a" * 32] * 1001}).encode(), 400, "at most 1000"),
    (json.dumps({"keys": ["a" * 32] * 4000}).encode(), 413, ""),
])
async def test_batch_get_refuses_bad_requests(client: TestClient, payload: bytes,
                                              status: int, message: str) -> None:
    resp = await client.post("/records/batch-get", data=payload)
    assert resp.status == status
    assert message in await resp.text()

"""Shard endpoints of an in-process node: round trips, has, and every refusal."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from storage_network.wire.write_auth import Publisher
from tests.support.shards import shard_files

from .conftest import MAX_SHARD
from .samples import signed_headers, stripe


async def put(client: TestClient, publisher: Publisher, sid: str, body: bytes, **kw: object):
    headers = signed_headers(publisher, "PUT", f"/shards/{sid}", body)
    return await client.put(f"/shards/{sid}", data=body, headers=headers, **kw)


def tmp_files(data_dir: Path) -> list[Path]:
    return list((data_dir / "tmp").iterdir())


async def test_round_trip_201_then_200(client: TestClient, publisher: Publisher,
                                       data_dir: Path) -> None:
    (sid, body), *_ = stripe()
    resp = await put(client, publisher, sid, body)
    assert resp.status == 201, await resp.text()
    assert await resp.json() == {"id": sid, "created": True, "healed": False,
                                 "bytes": len(body)}
    resp = await put(client, publisher, sid, body)
    assert resp.status == 200
    assert (await resp.json())["created"] is False

    resp = await client.get(f"/shards/{sid}")
    assert resp.status == 200
    assert resp.content_type == "application/octet-stream"
    assert await resp.read() == body
    resp = await client.head(f"/shards/{sid}")
    assert resp.status == 200
    assert int(resp.headers["Content-Length"]) == len(body)
    assert await resp.read() == b""
    assert shard_files(data_dir) == [data_dir / "shards" / sid[:2] / sid]
    assert tmp_files(data_dir) == []


async def test_absent_shard_is_404(client: TestClient) -> None:
    (sid, _), *_ = stripe()
    resp = await client.get(f"/shards/{sid}")
    assert resp.status == 404
    assert await resp.text() == f"error: no shard {sid}"
    assert (await client.head(f"/shards/{sid}")).status == 404


async def test_every_shard_of_a_stripe_is_accepted(client: TestClient,
                                                   publisher: Publisher) -> None:
    for sid, body in stripe(n=6, size=1000):
        assert (await put(client, publisher, sid, body)).status == 201


async def test_has_lists_the_present_subset_in_order(client: TestClient,
                                                     publisher: Publisher) -> None:
    shards = stripe(n=4)
    for sid, body in shards[1:3]:
        await put(client, publisher, sid, body)
    ids = [sid for sid, _ in reversed(shards)]
    resp = await client.post("/shards/has", json={"ids": ids})
    assert resp.status == 200
    assert await resp.json() == {"present": [shards[2][0], shards[1][0]]}
    resp = await client.post("/shards/has", json={"ids": []})
    assert await resp.json() == {"present": []}


@pytest.mark.parametrize("payload, message", [
    (b"not json", "not JSON"),
    (b"[1, 2]", '{"ids": [shard id, ...]}'),
    (b'{"ids": "abc"}', '{"ids": [shard id, ...]}'),
    (b'{"ids": ["../../etc/passwd"]}', "bad shard id '../../etc/passwd'"),
    (b'{"ids": [7]}', "bad shard id: a JSON number, not a string"),
    (b'{"ids": [[[["x"]]]]}', "bad shard id: a JSON array, not a string"),
    (b'{"ids": [], "touch": {"a": 1}}', "touch must be true or false, not a JSON object"),
    (b'"ids"', '{"ids": [shard id, ...]}, not a JSON string'),
    (b"[" * 100_000, "not JSON: nested too deeply"),
    (b'{"ids": [' * 50_000, "not JSON: nested too deeply"),
    (b"\xff\xfe{}", "not JSON"),
    (json.dumps({"ids": ["a" * 64 + ".0"] * 10_001}).encode(), "10001 ids, at most 10000"),
])
async def test_has_refuses_bad_requests(client: TestClient, payload: bytes, message: str) -> None:
    resp = await client.post("/shards/has", data=payload)
    assert resp.status == 400
    text = await resp.text()
    assert text.startswith("error: ") and message in text


async def test_has_refuses_a_body_over_2_mib(client: TestClient) -> None:
    resp = await client.post("/shards/has", data=b" " * (2 * 1024 * 1024 + 1))
    assert resp.status == 413
    assert "exceeds the limit of 2097152 bytes" in await resp.text()


@pytest.mark.parametrize("bad_id", [
    "a" * 64,                 # no index
    "A" * 64 + ".0",          # upper case
    "a" * 63 + ".0",          # short root
    "a" * 64 + ".256",        # index beyond a stripe
    "a" * 64 + ".01",         # leading zero
    "a" * 64 + ".0.gz",       # trailing suffix
    "a" * 64 + ".0%0A",       # trailing newline ("$" would let it through)
    "a" * 64 + ".0%2F..",     # a valid prefix, then more
    "has",
    "..%2F..%2Fsecret",
])
async def test_bad_shard_id_is_400(client: TestClient, publisher: Publisher, bad_id: str) -> None:
    for resp in (await client.get(f"/shards/{bad_id}"),
                 await put(client, publisher, bad_id, b"x")):
        assert resp.status == 400
        assert (await resp.text()).startswith("error: bad shard id")


async def test_write_without_signature_is_401(client: TestClient, publisher: Publisher,
                                              data_dir: Path) -> None:
    (sid, body), *_ = stripe()
    resp = await client.put(f"/shards/{sid}", data=body)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Nixshard-Ed25519"
    assert await resp.text() == ("error: write without publisher signature: missing "
                                 "Authorization and X-Nixshard-Date headers")
    headers = signed_headers(publisher, "PUT", f"/shards/{sid}", body)
    del headers["X-Nixshard-Date"]
    resp = await client.put(f"/shards/{sid}", data=body, headers=headers)
    assert resp.status == 401
    assert "missing X-Nixshard-Date header" in await resp.text()
    assert shard_files(data_dir) == []


def _forged(publisher: Publisher, stranger: Publisher, sid: str, body: bytes) -> dict[str, str]:
    # Signed by the stranger's key but claiming the accepted publisher's name.
    headers = signed_headers(stranger, "PUT", f"/shards/{sid}", body)
    headers["Authorization"] = headers["Authorization"].replace(stranger.name, publisher.name)
    return headers


@pytest.mark.parametrize("case, message", [
    ("unknown key", "publisher key 'stranger-1' is not accepted here"),
    ("forged", "bad signature by publisher key 'test-publisher-1'"),
    ("stale date", "X-Nixshard-Date is 1000 s away from now (max 300)"),
    ("other body", "bad signature"),
    ("other path", "bad signature"),
    ("other method", "bad signature"),
    ("bad scheme", "unsupported authorization scheme 'Basic'"),
])
async def test_refused_signature_is_403(client: TestClient, publisher: Publisher,
                                        stranger: Publisher, data_dir: Path,
                                        case: str, message: str) -> None:
    (sid, body), (other_sid, _), *_ = stripe()
    path = f"/shards/{sid}"
    headers = {
        "unknown key": lambda: signed_headers(stranger, "PUT", path, body),
        "forged": lambda: _forged(publisher, stranger, sid, body),
        "stale date": lambda: signed_headers(publisher, "PUT", path, body, now=time.time() - 1000),
        "other body": lambda: signed_headers(publisher, "PUT", path, body + b"!"),
        "other path": lambda: signed_headers(publisher, "PUT", f"/shards/{other_sid}", body),
        "other method": lambda: signed_headers(publisher, "POST", path, body),
        "bad scheme": lambda: {**signed_headers(publisher, "PUT", path, body),
                               "Authorization": "Basic dXNlcjpwYXNz"},
    }[case]()
    resp = await client.put(path, data=body, headers=headers)
    assert resp.status == 403
    text = await resp.text()
    assert text.startswith("error: ") and message in text
    assert (await client.get(path)).status == 404
    assert shard_files(data_dir) == [] and tmp_files(data_dir) == []


async def test_shard_not_matching_its_id_is_422_and_not_stored(
        client: TestClient, publisher: Publisher, data_dir: Path) -> None:
    (sid0, body0), (sid1, body1), *_ = stripe()
    tampered = body0[:-1] + bytes([body0[-1] ^ 1])
    for sid, body in ((sid0, tampered), (sid1, body0), (sid0, b""), (sid0, b"\x01" + b"\0" * 10)):
        resp = await put(client, publisher, sid, body)
        assert resp.status == 422
        assert (await resp.text()).startswith("error: shard does not match its id")
        assert (await client.get(f"/shards/{sid}")).status == 404
    assert shard_files(data_dir) == [] and tmp_files(data_dir) == []


async def test_oversize_declared_body_is_413(client: TestClient, publisher: Publisher,
                                             data_dir: Path) -> None:
    sid = stripe()[0][0]
    resp = await put(client, publisher, sid, b"\0" * (MAX_SHARD + 1))
    assert resp.status == 413
    assert await resp.text() == (f"error: shard body of {MAX_SHARD + 1} bytes exceeds the "
                                 f"limit of {MAX_SHARD} bytes")
    assert shard_files(data_dir) == [] and tmp_files(data_dir) == []


async def test_oversize_chunked_body_is_413(client: TestClient, publisher: Publisher,
                                            data_dir: Path) -> None:
    sid = stripe()[0][0]
    body = b"\0" * (MAX_SHARD + 10)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]

    headers = signed_headers(publisher, "PUT", f"/shards/{sid}", body)
    resp = await client.put(f"/shards/{sid}", data=chunks(), headers=headers)
    assert resp.status == 413
    assert await resp.text() == f"error: shard body exceeds the limit of {MAX_SHARD} bytes"
    assert shard_files(data_dir) == [] and tmp_files(data_dir) == []


async def test_chunked_body_within_the_cap_is_stored(client: TestClient,
                                                     publisher: Publisher) -> None:
    (sid, body), *_ = stripe(size=20_000)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 3000):
            yield body[i:i + 3000]

    headers = signed_headers(publisher, "PUT", f"/shards/{sid}", body)
    resp = await client.put(f"/shards/{sid}", data=chunks(), headers=headers)
    assert resp.status == 201
    assert await (await client.get(f"/shards/{sid}")).read() == body


async def test_expect_100_continue_refuses_before_the_body(client: TestClient,
                                                           publisher: Publisher) -> None:
    (sid, body), *_ = stripe()
    resp = await client.put(f"/shards/{sid}", data=body, expect100=True)
    assert resp.status == 401
    resp = await put(client, publisher, sid, body, expect100=True)
    assert resp.status == 201


async def test_concurrent_puts_of_one_id_store_it_once(client: TestClient, publisher: Publisher,
                                                       data_dir: Path) -> None:
    (sid, body), *_ = stripe(size=30_000)
    statuses = sorted(r.status for r in await asyncio.gather(
        *(put(client, publisher, sid, body) for _ in range(12))))
    assert statuses == [200] * 11 + [201]
    assert (data_dir / "shards" / sid[:2] / sid).read_bytes() == body
    assert tmp_files(data_dir) == []
    health = await (await client.get("/healthz")).json()
    assert (health["shards"], health["shard_bytes"]) == (1, len(body))


async def test_writes_and_refusals_log_one_line_each(client: TestClient, publisher: Publisher,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nixshard.node")
    (sid, body), *_ = stripe()
    await put(client, publisher, sid, body)
    await put(client, publisher, sid, body[:-1] + b"?")
    await client.put(f"/shards/{sid}", data=body)
    lines = [r.getMessage() for r in caplog.records if r.name == "nixshard.node"]
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"stored shard {sid} ({len(body)} bytes) for publisher")
    assert "422 shard does not match its id" in lines[1]
    assert "401 write without publisher signature" in lines[2]

"""The node side of garbage collection: touch, conditional deletes, record read times."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from storage_network.wire.write_auth import Publisher
from storage_node.store import Store
from storage_node.store_layout import Deletion

from .samples import T0, chunk_refs, record, record_key, signed_headers, stripe

OLD = 1_000_000_000.0  # 2001: older than any cut-off a test uses


async def put_shard(client: TestClient, publisher: Publisher, sid: str, body: bytes) -> int:
    path = f"/shards/{sid}"
    resp = await client.put(path, data=body, headers=signed_headers(publisher, "PUT", path, body))
    return resp.status


async def put_record(client: TestClient, publisher: Publisher, key: str, body: bytes) -> None:
    path = f"/records/{key}"
    resp = await client.put(path, data=body, headers=signed_headers(publisher, "PUT", path, body))
    assert resp.status in (200, 201), await resp.text()


def shard_file(data_dir: Path, sid: str) -> Path:
    return data_dir / "shards" / sid[:2] / sid


def record_file(data_dir: Path, key: str) -> Path:
    return data_dir / "records" / key


async def health(client: TestClient) -> dict[str, int]:
    result: dict[str, int] = await (await client.get("/healthz")).json()
    return result


# --- POST /shards/has with touch ----------------------------------------------------------


async def touch(client: TestClient, signer: Publisher | None, ids: list[str],
                signed_path: str = "/shards/has", extra: dict[str, object] | None = None):
    body = json.dumps({"ids": ids, "touch": True, **(extra or {})}).encode()
    headers = {} if signer is None else signed_headers(signer, "POST", signed_path, body)
    return await client.post("/shards/has", data=body, headers=headers)


async def test_signed_touch_sets_the_mtime_of_present_shards(
        client: TestClient, publisher: Publisher, data_dir: Path) -> None:
    (held, body), (absent, _) = stripe(n=2)
    assert await put_shard(client, publisher, held, body) == 201
    os.utime(shard_file(data_dir, held), (OLD, OLD))
    before = time.time()
    resp = await touch(client, publisher, [absent, held])
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"present": [held]}
    assert shard_file(data_dir, held).stat().st_mtime >= before - 1
    assert not shard_file(data_dir, absent).exists()


async def test_has_without_touch_stays_open_and_touches_nothing(
        client: TestClient, publisher: Publisher, data_dir: Path) -> None:
    (sid, body), *_ = stripe()
    await put_shard(client, publisher, sid, body)
    os.utime(shard_file(data_dir, sid), (OLD, OLD))
    for doc in ({"ids": [sid]}, {"ids": [sid], "touch": False}):
        resp = await client.post("/shards/has", json=doc)
        assert resp.status == 200 and await resp.json() == {"present": [sid]}
    assert shard_file(data_dir, sid).stat().st_mtime == OLD


async def test_touch_without_signature_is_401(client: TestClient, publisher: Publisher,
                                              data_dir: Path) -> None:
    (sid, body), *_ = stripe()
    await put_shard(client, publisher, sid, body)
    os.utime(shard_file(data_dir, sid), (OLD, OLD))
    resp = await touch(client, None, [sid])
    assert resp.status == 401
    assert shard_file(data_dir, sid).stat().st_mtime == OLD


@pytest.mark.parametrize("case", ["stranger", "wrong path", "other body"])
async def test_touch_with_a_refused_signature_is_403(client: TestClient, publisher: Publisher,
                                                     stranger: Publisher, data_dir: Path,
                                                     case: str) -> None:
    (sid, body), *_ = stripe()
    await put_shard(client, publisher, sid, body)
    os.utime(shard_file(data_dir, sid), (OLD, OLD))
    if case == "stranger":
        resp = await touch(client, stranger, [sid])
    elif case == "wrong path":
        resp = await touch(client, publisher, [sid], signed_path=f"/shards/{sid}")
    else:
        sent = json.dumps({"ids": [sid], "touch": True}).encode()
        headers = signed_headers(publisher, "POST", "/shards/has", sent + b" ")
        resp = await client.post("/shards/has", data=sent, headers=headers)
    assert resp.status == 403, await resp.text()
    assert shard_file(data_dir, sid).stat().st_mtime == OLD


async def test_touch_that_is_not_a_boolean_is_400(client: TestClient, publisher: Publisher) -> None:
    (sid, _), *_ = stripe()
    body = json.dumps({"ids": [sid], "touch": "yes"}).encode()
    resp = await client.post("/shards/has", data=body,
                             headers=signed_headers(publisher, "POST", "/shards/has", body))
    assert resp.status == 400
    assert "touch must be true or false" in await resp.text()


async def test_put_of_a_held_shard_sets_its_mtime(client: TestClient, publisher: Publisher,
                                                  data_dir: Path) -> None:
    (sid, body), *_ = stripe()
    assert await put_shard(client, publisher, sid, body) == 201
    os.utime(shard_file(data_dir, sid), (OLD, OLD))
    start = time.time()
    assert await put_shard(client, publisher, sid, body) == 200
    assert shard_file(data_dir, sid).stat().st_mtime >= start - 1
    assert shard_file(data_dir, sid).read_bytes() == body


# --- DELETE /shards/{id}?before=T ---------------------------------------------------------


async def delete_shard(client: TestClient, signer: Publisher | None, sid: str, query: str,
                       signed_path: str | None = None):
    path = f"/shards/{sid}{query}"
    headers = {} if signer is None else signed_headers(signer, "DELETE", signed_path or path,
                                                        b"")
    return await client.delete(path, headers=headers)


async def test_delete_of_an_old_shard_is_204_and_counted(client: TestClient,
                                                         publisher: Publisher,
                                                         data_dir: Path) -> None:
    (gone, body), (stays, body2) = stripe(n=2)
    for sid, b in ((gone, body), (stays, body2)):
        await put_shard(client, publisher, sid, b)
    os.utime(shard_file(data_dir, gone), (OLD, OLD))
    resp = await delete_shard(client, publisher, gone, f"?before={time.time():.3f}")
    assert resp.status == 204, await resp.text()
    assert not shard_file(data_dir, gone).exists()
    assert (await client.get(f"/shards/{gone}")).status == 404
    counts = await health(client)
    assert (counts["shards"], counts["shard_bytes"]) == (1, len(body2))


async def test_delete_of_an_absent_shard_is_404(client: TestClient, publisher: Publisher) -> None:
    (sid, _), *_ = stripe()
    resp = await delete_shard(client, publisher, sid, f"?before={time.time():.3f}")
    assert resp.status == 404


async def test_delete_of_a_shard_touched_since_is_412(client: TestClient, publisher: Publisher,
                                                      data_dir: Path) -> None:
    (sid, body), *_ = stripe()
    await put_shard(client, publisher, sid, body)
    cutoff = time.time() - 60  # the collector looked a minute ago; the PUT came after
    resp = await delete_shard(client, publisher, sid, f"?before={cutoff:.3f}")
    assert resp.status == 412
    assert "written or touched" in await resp.text()
    assert shard_file(data_dir, sid).read_bytes() == body
    assert (await health(client))["shards"] == 1
    # an mtime equal to the cut-off is still "touched since"; a millisecond older is not
    mtime = float(int(time.time())) + 0.5
    os.utime(shard_file(data_dir, sid), (mtime, mtime))
    resp = await delete_shard(client, publisher, sid, f"?before={mtime:.3f}")
    assert resp.status == 412
    resp = await delete_shard(client, publisher, sid, f"?before={mtime + 0.001:.3f}")
    assert resp.status == 204


@pytest.mark.parametrize("query", ["", "?before=", "?before=abc", "?before=nan", "?before=inf",
                                   "?before=-1", "?before=1&before=2", "?after=1"])
async def test_delete_shard_with_a_bad_before_is_400(client: TestClient, publisher: Publisher,
                                                     query: str) -> None:
    (sid, body), *_ = stripe()
    await put_shard(client, publisher, sid, body)
    resp = await delete_shard(client, publisher, sid, query)
    assert resp.status == 400, await resp.text()
    assert "before" in await resp.text()


@pytest.mark.parametrize("bad_id", ["a" * 64, "A" * 64 + ".0", "a" * 64 + ".256", "..%2Fx"])
async def test_delete_shard_with_a_bad_id_is_400(client: TestClient, publisher: Publisher,
                                                 bad_id: str) -> None:
    resp = await delete_shard(client, publisher, bad_id, "?before=1")
    assert resp.status == 400


async def test_delete_shard_without_signature_is_401(client: TestClient, publisher: Publisher,
                                                     data_dir: Path) -> None:
    (sid, body), *_ = stripe()
    await put_shard(client, publisher, sid, body)
    os.utime(shard_file(data_dir, sid), (OLD, OLD))
    resp = await delete_shard(client, None, sid, f"?before={time.time():.3f}")
    assert resp.status == 401
    assert shard_file(data_dir, sid).exists()


@pytest.mark.parametrize("case", ["stranger", "path without query", "other before"])
async def test_delete_shard_with_a_refused_signature_is_403(
        client: TestClient, publisher: Publisher, stranger: Publisher, data_dir: Path,
        case: str) -> None:
    (sid, body), *_ = stripe()
    await put_shard(client, publisher, sid, body)
    os.utime(shard_file(data_dir, sid), (OLD, OLD))
    query = f"?before={time.time():.3f}"
    if case == "stranger":
        resp = await delete_shard(client, stranger, sid, query)
    elif case == "path without query":
        resp = await delete_shard(client, publisher, sid, query, signed_path=f"/shards/{sid}")
    else:  # a signature for an older cut-off cannot be replayed with a newer one
        resp = await delete_shard(client, publisher, sid, query,
                                  signed_path=f"/shards/{sid}?before=1.000")
    assert resp.status == 403, await resp.text()
    assert shard_file(data_dir, sid).exists()


# --- DELETE /records/{key}?sha256=HEX -----------------------------------------------------


async def delete_record(client: TestClient, signer: Publisher | None, key: str, query: str,
                        signed_path: str | None = None):
    path = f"/records/{key}{query}"
    headers = {} if signer is None else signed_headers(signer, "DELETE", signed_path or path,
                                                        b"")
    return await client.delete(path, headers=headers)


async def test_delete_of_the_named_record_is_204(client: TestClient, publisher: Publisher,
                                                 data_dir: Path) -> None:
    key = record_key()
    body = record(publisher, key)
    await put_record(client, publisher, key, body)
    assert (await health(client))["records"] == 1
    resp = await delete_record(client, publisher, key,
                               f"?sha256={hashlib.sha256(body).hexdigest()}")
    assert resp.status == 204, await resp.text()
    assert not record_file(data_dir, key).exists()
    assert (await client.get(f"/records/{key}")).status == 404
    assert (await health(client))["records"] == 0


async def test_delete_of_an_absent_record_is_404(client: TestClient,
                                                 publisher: Publisher) -> None:
    resp = await delete_record(client, publisher, record_key(), "?sha256=" + "0" * 64)
    assert resp.status == 404


async def test_delete_of_a_replaced_record_is_412(client: TestClient, publisher: Publisher,
                                                  data_dir: Path) -> None:
    key, refs = record_key(), chunk_refs()
    old = record(publisher, key, refs=refs, created=T0)
    new = record(publisher, key, note="-2", refs=refs, created=T0 + 1)
    await put_record(client, publisher, key, old)
    await put_record(client, publisher, key, new)
    resp = await delete_record(client, publisher, key,
                               f"?sha256={hashlib.sha256(old).hexdigest().upper()}")
    assert resp.status == 412
    assert record_file(data_dir, key).read_bytes() == new
    assert (await health(client))["records"] == 1


@pytest.mark.parametrize("query", ["", "?sha256=", "?sha256=" + "0" * 63, "?sha256=" + "g" * 64,
                                   "?sha256=" + "0" * 65, "?sha=" + "0" * 64,
                                   f"?sha256={'0' * 64}&sha256={'1' * 64}"])
async def test_delete_record_with_a_bad_sha256_is_400(client: TestClient, publisher: Publisher,
                                                      query: str) -> None:
    key = record_key()
    await put_record(client, publisher, key, record(publisher, key))
    resp = await delete_record(client, publisher, key, query)
    assert resp.status == 400, await resp.text()
    assert "sha256" in await resp.text()


@pytest.mark.parametrize("bad_key", ["A" * 32, "a" * 31, "a" * 33, "..%2F..%2Fsecret"])
async def test_delete_record_with_a_bad_key_is_400(client: TestClient, publisher: Publisher,
                                                   bad_key: str) -> None:
    resp = await delete_record(client, publisher, bad_key, "?sha256=" + "0" * 64)
    assert resp.status == 400


async def test_delete_record_without_signature_is_401(client: TestClient,
                                                      publisher: Publisher) -> None:
    key = record_key()
    body = record(publisher, key)
    await put_record(client, publisher, key, body)
    resp = await delete_record(client, None, key, f"?sha256={hashlib.sha256(body).hexdigest()}")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Nixshard-Ed25519"


@pytest.mark.parametrize("case", ["stranger", "path without query"])
async def test_delete_record_with_a_refused_signature_is_403(
        client: TestClient, publisher: Publisher, stranger: Publisher, data_dir: Path,
        case: str) -> None:
    key = record_key()
    body = record(publisher, key)
    await put_record(client, publisher, key, body)
    query = f"?sha256={hashlib.sha256(body).hexdigest()}"
    if case == "stranger":
        resp = await delete_record(client, stranger, key, query)
    else:
        resp = await delete_record(client, publisher, key, query, signed_path=f"/records/{key}")
    assert resp.status == 403
    assert record_file(data_dir, key).exists()


# --- GET /records/{key} moves the atime ---------------------------------------------------


def listed_atime(text: str, key: str) -> float:
    for line in text.splitlines():
        name, _, _, atime = line.split()
        if name == key:
            return float(atime)
    raise AssertionError(f"{key} not listed")


async def test_get_of_a_record_sets_its_atime_at_most_once_a_minute(
        client: TestClient, publisher: Publisher, data_dir: Path) -> None:
    key = record_key()
    body = record(publisher, key)
    await put_record(client, publisher, key, body)
    path = record_file(data_dir, key)
    mtime = path.stat().st_mtime
    os.utime(path, (OLD, mtime))
    start = time.time()
    resp = await client.get(f"/records/{key}")
    assert resp.status == 200 and await resp.read() == body
    assert path.stat().st_atime >= start - 1
    assert path.stat().st_mtime == mtime  # the write time stays
    assert listed_atime(await (await client.get("/records")).text(), key) >= start - 1
    # within a minute of the last counted read, a read changes nothing
    recent = time.time() - 30
    os.utime(path, (recent, mtime))
    assert (await client.get(f"/records/{key}")).status == 200
    assert path.stat().st_atime == pytest.approx(recent)


async def test_peek_and_head_reads_do_not_count(client: TestClient, publisher: Publisher,
                                                data_dir: Path) -> None:
    key = record_key()
    body = record(publisher, key)
    await put_record(client, publisher, key, body)
    path = record_file(data_dir, key)
    os.utime(path, (OLD, path.stat().st_mtime))
    resp = await client.get(f"/records/{key}", headers={"X-Nixshard-Peek": "1"})
    assert resp.status == 200 and await resp.read() == body
    resp = await client.head(f"/records/{key}")
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(body)
    assert path.stat().st_atime == OLD
    assert listed_atime(await (await client.get("/records")).text(), key) == OLD


# --- the store: check and act under one lock ----------------------------------------------


async def test_deletes_never_remove_a_shard_touched_concurrently(tmp_path: Path) -> None:
    """Touches and deletes race; a shard whose touch reported it present is never deleted
    by a delete with a cut-off before that touch."""
    store = Store.open(tmp_path)
    shards = stripe(n=40)
    for sid, body in shards:
        with store.new_temp() as temp:
            temp.write(body)
            await store.commit_shard(temp, sid)
        os.utime(store.shard_path(sid), (OLD, OLD))
    cutoff = time.time() - 1  # every touch below happens after this
    ids = [sid for sid, _ in shards]
    touched, outcomes = await asyncio.gather(
        store.touch_shards(ids),
        asyncio.gather(*(store.delete_shard(sid, cutoff) for sid in ids)))
    for sid, outcome in zip(ids, outcomes, strict=True):
        assert (sid in touched) == (outcome is Deletion.KEPT)
        assert store.shard_path(sid).exists() == (sid in touched)
    assert store.stats.shards == len(touched)
    store.close()


# --- listing pages -------------------------------------------------------------------------


async def test_a_record_page_skips_what_is_not_a_record_file_and_stays_full(
        client: TestClient, publisher: Publisher, data_dir: Path) -> None:
    keys = sorted(record_key() for _ in range(6))
    for key in keys:
        await put_record(client, publisher, key, record(publisher, key))
    # a directory under a record's name (not a file) is no record, and does not shorten a page
    (record_file(data_dir, keys[1][:-1] + ("a" if keys[1][-1] != "a" else "b"))).mkdir()
    page = await client.get("/records", params={"after": keys[0], "limit": "3"})
    assert page.status == 200
    assert [line.split()[0] for line in (await page.text()).splitlines()] == keys[1:4]
    rest = await client.get("/records", params={"after": keys[3], "limit": "3"})
    assert [line.split()[0] for line in (await rest.text()).splitlines()] == keys[4:]


async def test_a_shard_page_crosses_fan_out_directories(
        client: TestClient, publisher: Publisher) -> None:
    ids = []
    for _ in range(4):
        for sid, body in stripe(3):
            assert await put_shard(client, publisher, sid, body) == 201
            ids.append(sid)
    ids.sort()
    got: list[str] = []
    after = ""
    while True:
        page = await client.get("/shards", params={"after": after, "limit": "5"})
        lines = [line.split()[0] for line in (await page.text()).splitlines()]
        got += lines
        if len(lines) < 5:
            break
        after = lines[-1]
    assert got == ids

"""A signed PUT of a shard the node holds heals the held bytes when they no longer match
their id (this is how repair heals corruption), and keeps them when they still do."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from storage_network.wire.shard_batch import encode_put_batch
from storage_network.wire.write_auth import Publisher

from .samples import signed_headers, stripe


def shard_file(data_dir: Path, sid: str) -> Path:
    return data_dir / "shards" / sid[:2] / sid


async def put(client: TestClient, publisher: Publisher, sid: str, body: bytes):
    path = f"/shards/{sid}"
    return await client.put(path, data=body, headers=signed_headers(publisher, "PUT", path, body))


async def batch_put(client: TestClient, publisher: Publisher, body: bytes):
    path = "/shards/batch-put"
    return await client.post(path, data=body,
                             headers=signed_headers(publisher, "POST", path, body))


async def healed_total(client: TestClient) -> float:
    text = await (await client.get("/metrics")).text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "nixshard_node_shards_healed_total":
                return float(sample.value)
    raise AssertionError("no nixshard_node_shards_healed_total")


def rot(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


async def test_a_put_replaces_held_bytes_that_no_longer_match(
        client: TestClient, publisher: Publisher, data_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    (sid, body), *_ = stripe(size=3000)
    assert (await put(client, publisher, sid, body)).status == 201
    rot(shard_file(data_dir, sid))
    caplog.clear()
    resp = await put(client, publisher, sid, body)
    assert resp.status == 201, await resp.text()
    assert await resp.json() == {"id": sid, "created": True, "healed": True, "bytes": len(body)}
    assert shard_file(data_dir, sid).read_bytes() == body
    assert await (await client.get(f"/shards/{sid}")).read() == body
    assert await healed_total(client) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"shard {sid} no longer matched its id ({len(body)} bytes stored); "
                        f"replaced by the {len(body)} bytes just written"]
    health = await (await client.get("/healthz")).json()
    assert (health["shards"], health["shard_bytes"]) == (1, len(body))
    assert list((data_dir / "tmp").iterdir()) == []


async def test_a_truncated_held_shard_is_healed(
        client: TestClient, publisher: Publisher, data_dir: Path) -> None:
    (sid, body), *_ = stripe(size=3000)
    assert (await put(client, publisher, sid, body)).status == 201
    shard_file(data_dir, sid).write_bytes(body[:100])
    resp = await put(client, publisher, sid, body)
    assert resp.status == 201 and (await resp.json())["healed"] is True
    assert shard_file(data_dir, sid).read_bytes() == body


async def test_a_put_keeps_held_bytes_that_still_match(client: TestClient,
                                                       publisher: Publisher,
                                                       data_dir: Path) -> None:
    (sid, body), *_ = stripe(size=3000)
    assert (await put(client, publisher, sid, body)).status == 201
    os.utime(shard_file(data_dir, sid), (1_000_000_000, 1_000_000_000))
    inode = shard_file(data_dir, sid).stat().st_ino
    resp = await put(client, publisher, sid, body)
    assert resp.status == 200
    assert (await resp.json())["healed"] is False
    assert shard_file(data_dir, sid).stat().st_ino == inode  # the same file, not rewritten
    assert shard_file(data_dir, sid).stat().st_mtime > 1_000_000_000  # touched
    assert await healed_total(client) == 0


async def test_a_batch_put_heals_the_held_shards_that_rotted(
        client: TestClient, publisher: Publisher, data_dir: Path) -> None:
    shards = stripe(n=4, size=2000)
    resp = await batch_put(client, publisher, encode_put_batch(shards[:3]))
    assert resp.status == 200, await resp.text()
    rot(shard_file(data_dir, shards[1][0]))
    resp = await batch_put(client, publisher, encode_put_batch(shards))
    assert resp.status == 200, await resp.text()
    ids = [sid for sid, _ in shards]
    assert await resp.json() == {"created": [ids[1], ids[3]], "held": [ids[0], ids[2]],
                                 "healed": [ids[1]]}
    for sid, body in shards:
        assert shard_file(data_dir, sid).read_bytes() == body
    assert await healed_total(client) == 1
    health = await (await client.get("/healthz")).json()
    assert health["shards"] == 4

"""The hostile TEST-ONLY fault modes of an in-process node: deep-json, endless, trickle,
slow-has and stale-records (see storage_node.faults)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from storage_network.wire.shard_batch import encode_put_batch, parse_get_answer
from storage_network.wire.write_auth import Publisher
from storage_node import faults as faults_module
from storage_node.app import create_app
from storage_node.config import NodeConfig
from storage_node.faults import DEEP_JSON, TRICKLE_TICK_SECONDS, Faults

from .samples import T0, chunk_refs, record, record_key, signed_headers, stripe, tombstone


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait of the fault modes, recorded (in seconds) instead of slept."""
    waits: list[float] = []

    async def record_pause(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(faults_module, "_pause", record_pause)
    return waits


@pytest.fixture
async def node(tmp_path: Path, publisher: Publisher, pauses: list[float],
               request: pytest.FixtureRequest) -> AsyncIterator[TestClient]:
    """An in-process node with the faults given by indirect parametrisation."""
    config = NodeConfig(tmp_path / "data", "node-1", {publisher.name: publisher.public},
                        faults=request.param)
    async with TestClient(TestServer(create_app(config))) as client:
        yield client


async def put_record(client: TestClient, publisher: Publisher, key: str, body: bytes) -> int:
    path = f"/records/{key}"
    resp = await client.put(path, data=body, headers=signed_headers(publisher, "PUT", path, body))
    await resp.read()
    return resp.status


async def put_shards(client: TestClient, publisher: Publisher,
                     shards: list[tuple[str, bytes]]) -> bytes:
    body = encode_put_batch(shards)
    path = "/shards/batch-put"
    resp = await client.post(path, data=body,
                             headers=signed_headers(publisher, "POST", path, body))
    assert resp.status == 200
    return await resp.read()


# -- deep-json -------------------------------------------------------------------------------

@pytest.mark.parametrize("node", [Faults(deep_json=True)], indirect=True)
async def test_deep_json_replaces_every_json_answer_but_healthz(
        node: TestClient, publisher: Publisher) -> None:
    shards = stripe(n=2)
    ack = await put_shards(node, publisher, shards)
    assert ack == DEEP_JSON
    resp = await node.post("/shards/has", json={"ids": [sid for sid, _ in shards]})
    assert resp.status == 200 and resp.content_length == len(DEEP_JSON) == 100_000
    assert resp.content_type == "application/json"
    assert await resp.read() == DEEP_JSON
    with pytest.raises(RecursionError):
        json.loads(DEEP_JSON)
    key = record_key()
    body = record(publisher, key)
    path = f"/records/{key}"
    resp = await node.put(path, data=body, headers=signed_headers(publisher, "PUT", path, body))
    assert resp.status == 201 and await resp.read() == DEEP_JSON
    # healthz, records, shards and refusals are served as they are
    assert (await (await node.get("/healthz")).json())["shards"] == 2
    assert await (await node.get(path)).read() == body
    assert await (await node.get(f"/shards/{shards[0][0]}")).read() == shards[0][1]
    resp = await node.post("/shards/has", data=b"nonsense")
    assert resp.status == 400 and (await resp.text()).startswith("error: ")


# -- endless ---------------------------------------------------------------------------------

async def read_some_and_leave(client: TestClient, method: str, path: str,
                              **kwargs: object) -> bytes:
    resp = await client.request(method, path, **kwargs)
    assert resp.status == 200
    assert "Content-Length" not in resp.headers
    assert resp.headers["Transfer-Encoding"] == "chunked"
    got = bytearray()
    while len(got) < 1 << 20:  # far more than any of these answers is
        piece = await resp.content.read(65536)
        assert piece, "the endless answer ended"
        got += piece
    resp.close()
    return bytes(got)


@pytest.mark.parametrize("node", [Faults(endless=True)], indirect=True)
async def test_endless_streams_records_has_and_batch_get_forever(
        node: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nixshard")
    absent = record_key()  # answered 200 and endless whether held or not
    sid = stripe(n=1)[0][0]
    for method, path, kwargs in [("GET", f"/records/{absent}", {}),
                                 ("POST", "/shards/has", {"json": {"ids": [sid]}}),
                                 ("POST", "/shards/batch-get", {"json": {"ids": [sid]}})]:
        got = await read_some_and_leave(node, method, path, **kwargs)
        assert set(got) == {ord("[")}
    # (aiohttp's test server cancels a handler whose client left; a real node logs it:
    # test_client_gone.py)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert (await node.get("/healthz")).status == 200
    assert (await node.get(f"/shards/{sid}")).status == 404  # other routes as usual


# -- trickle ---------------------------------------------------------------------------------

RATE = 500.0  # bytes per second: 50-byte pieces


def assert_paced(pauses: list[float], size: int) -> None:
    step = int(RATE * TRICKLE_TICK_SECONDS)
    assert len(pauses) == math.ceil(size / step)
    assert sum(pauses) == pytest.approx(size / RATE)


@pytest.mark.parametrize("node", [Faults(trickle=RATE)], indirect=True)
async def test_trickle_sends_the_real_content_at_the_rate(
        node: TestClient, publisher: Publisher, pauses: list[float]) -> None:
    key = record_key()
    body = record(publisher, key)
    assert await put_record(node, publisher, key, body) == 201
    shards = stripe(n=2, size=300)
    await put_shards(node, publisher, shards)
    assert pauses == []  # writes and their acks are not slowed

    resp = await node.get(f"/records/{key}")
    assert resp.status == 200 and resp.content_length == len(body)
    assert await resp.read() == body
    assert_paced(pauses, len(body))

    pauses.clear()
    ids = [sid for sid, _ in shards]
    resp = await node.post("/shards/has", json={"ids": ids})
    answer = await resp.read()
    assert json.loads(answer) == {"present": ids} and resp.content_length == len(answer)
    assert_paced(pauses, len(answer))

    pauses.clear()
    resp = await node.post("/shards/batch-get", json={"ids": ids})
    answer = await resp.read()
    assert [bytes(b or b"") for b in parse_get_answer(answer, 2)] == [b for _, b in shards]
    assert_paced(pauses, len(answer))

    pauses.clear()
    assert await (await node.get(f"/shards/{ids[0]}")).read() == shards[0][1]
    assert (await node.get(f"/records/{record_key()}")).status == 404
    assert pauses == []  # shard GETs and refusals go at full speed


# -- slow-has --------------------------------------------------------------------------------

@pytest.mark.parametrize("node", [Faults(slow_has=7.5)], indirect=True)
async def test_slow_has_waits_only_before_has(node: TestClient, publisher: Publisher,
                                             pauses: list[float]) -> None:
    shards = stripe(n=2)
    await put_shards(node, publisher, shards)
    key = record_key()
    assert await put_record(node, publisher, key, record(publisher, key)) == 201
    assert (await node.get(f"/records/{key}")).status == 200
    assert (await node.get(f"/shards/{shards[0][0]}")).status == 200
    assert (await node.post("/shards/batch-get", json={"ids": [shards[0][0]]})).status == 200
    assert pauses == []
    resp = await node.post("/shards/has", json={"ids": [shards[0][0]]})
    assert await resp.json() == {"present": [shards[0][0]]}
    assert pauses == [7.5]


# -- stale-records ---------------------------------------------------------------------------

@pytest.mark.parametrize("node", [Faults(stale_records=True)], indirect=True)
async def test_stale_records_serves_the_first_version_ever_stored(
        node: TestClient, publisher: Publisher, tmp_path: Path) -> None:
    key, refs = record_key(), chunk_refs()
    first = record(publisher, key, refs=refs, created=T0)
    newer = record(publisher, key, refs=refs, note="-2", created=T0 + 1)
    dead = tombstone(publisher, key, created=T0 + 2)
    assert await put_record(node, publisher, key, first) == 201
    assert await put_record(node, publisher, key, newer) == 200
    assert (tmp_path / "data" / "records" / key).read_bytes() == newer  # what it holds
    assert await (await node.get(f"/records/{key}")).read() == first  # what it serves
    assert await put_record(node, publisher, key, dead) == 200
    resp = await node.get(f"/records/{key}")
    assert resp.status == 200 and await resp.read() == first
    resp = await node.head(f"/records/{key}")
    assert resp.status == 200 and resp.content_length == len(first)
    # a key first stored as a tombstone serves that tombstone
    other = record_key()
    gone = tombstone(publisher, other, created=T0)
    assert await put_record(node, publisher, other, gone) == 201
    assert await put_record(node, publisher, other, record(publisher, other,
                                                           created=T0 + 5)) == 200
    assert await (await node.get(f"/records/{other}")).read() == gone
    assert (await node.get(f"/records/{record_key()}")).status == 404


async def test_stale_records_survive_a_restart(tmp_path: Path, publisher: Publisher) -> None:
    config = NodeConfig(tmp_path / "data", "node-1", {publisher.name: publisher.public},
                        faults=Faults(stale_records=True))
    key, refs = record_key(), chunk_refs()
    first = record(publisher, key, refs=refs, created=T0)
    newer = record(publisher, key, refs=refs, note="-2", created=T0 + 1)
    async with TestClient(TestServer(create_app(config))) as client:
        assert await put_record(client, publisher, key, first) == 201
    async with TestClient(TestServer(create_app(config))) as client:
        assert await put_record(client, publisher, key, newer) == 200
        assert await (await client.get(f"/records/{key}")).read() == first

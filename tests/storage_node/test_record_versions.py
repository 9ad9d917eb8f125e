"""Record versions on one node: which PUT replaces what (docs/consistency.md, the node table),
tombstones held in place of records, and the decision made atomically per key."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from storage_network.wire.write_auth import Publisher

from .samples import T0, chunk_refs, record, record_key, signed_headers, tombstone


async def put(client: TestClient, publisher: Publisher, key: str, body: bytes):
    headers = signed_headers(publisher, "PUT", f"/records/{key}", body)
    return await client.put(f"/records/{key}", data=body, headers=headers)


async def held(client: TestClient, key: str) -> bytes | None:
    resp = await client.get(f"/records/{key}")
    return await resp.read() if resp.status == 200 else None


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_nothing_held_is_201_and_the_same_bytes_again_200(
        client: TestClient, publisher: Publisher) -> None:
    key = record_key()
    body = record(publisher, key, created=T0)
    assert (await put(client, publisher, key, body)).status == 201
    resp = await put(client, publisher, key, body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["replaced"] is False
    assert await held(client, key) == body


async def test_an_older_version_is_409_and_kept(client: TestClient, publisher: Publisher,
                                                data_dir: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    key, refs = record_key(), chunk_refs()
    newer = record(publisher, key, refs=refs, created=T0 + 10)
    older = record(publisher, key, refs=refs, note="-old", created=T0)
    assert (await put(client, publisher, key, newer)).status == 201
    caplog.clear()
    resp = await put(client, publisher, key, older)
    assert resp.status == 409
    assert await resp.text() == (
        f"error: holds a newer version of record {key} (created {T0 + 10}, a record); "
        f"the PUT carries one created {T0}: kept")
    assert await held(client, key) == newer
    assert [r.getMessage() for r in refusals(caplog)] == [
        f"refused PUT '/records/{key}' from 127.0.0.1: 409 holds a newer version of record "
        f"{key} (created {T0 + 10}, a record); the PUT carries one created {T0}: kept"]
    assert all(r.exc_info is None for r in caplog.records)
    assert list((data_dir / "tmp").iterdir()) == []


async def test_a_newer_record_of_the_same_content_replaces(client: TestClient,
                                                           publisher: Publisher) -> None:
    key, refs = record_key(), chunk_refs()
    first = record(publisher, key, refs=refs, created=T0)
    second = record(publisher, key, refs=refs, note="-resigned", created=T0 + 1)
    assert (await put(client, publisher, key, first)).status == 201
    resp = await put(client, publisher, key, second)
    assert resp.status == 200 and (await resp.json())["replaced"] is True
    assert await held(client, key) == second


async def test_a_newer_record_of_another_content_is_409(client: TestClient,
                                                        publisher: Publisher) -> None:
    key = record_key()
    first = record(publisher, key, created=T0)
    other = record(publisher, key, created=T0 + 100)  # new random chunk refs
    assert (await put(client, publisher, key, first)).status == 201
    resp = await put(client, publisher, key, other)
    assert resp.status == 409
    assert await resp.text() == (f"error: holds another content for record {key}: the first "
                                 "committed content wins")
    assert await held(client, key) == first


async def test_tombstones_replace_records_and_records_replace_older_tombstones(
        client: TestClient, publisher: Publisher) -> None:
    key = record_key()
    first = record(publisher, key, created=T0)
    dead = tombstone(publisher, key, created=T0 + 5)
    assert (await put(client, publisher, key, first)).status == 201
    resp = await put(client, publisher, key, dead)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"key": key, "created": False, "replaced": True,
                                 "tombstone": True, "bytes": len(dead)}
    assert await held(client, key) == dead  # a GET serves the tombstone as held
    # the deleted record sent again (e.g. by a node that missed the delete) stays out
    assert (await put(client, publisher, key, first)).status == 409
    assert (await put(client, publisher, key, tombstone(publisher, key, T0 + 1))).status == 409
    # a path pushed again after gc: a newer record of any content replaces the tombstone
    again = record(publisher, key, created=T0 + 6)
    assert (await put(client, publisher, key, again)).status == 200
    assert await held(client, key) == again
    health = await (await client.get("/healthz")).json()
    assert health["records"] == 1


async def test_a_tombstone_is_stored_when_nothing_is_held(client: TestClient,
                                                          publisher: Publisher) -> None:
    key = record_key()
    dead = tombstone(publisher, key, created=T0)
    resp = await put(client, publisher, key, dead)
    assert resp.status == 201 and (await resp.json())["tombstone"] is True
    assert await held(client, key) == dead
    assert (await put(client, publisher, key, record(publisher, key, created=T0 - 1))).status \
        == 409


async def test_concurrent_puts_of_other_contents_leave_one_winner(
        client: TestClient, publisher: Publisher) -> None:
    """Two gateways racing one path: exactly one content is stored, everyone else gets 409,
    whatever the order the node sees them in (the decision is made under the record lock)."""
    key = record_key()
    bodies = [record(publisher, key, note=f"-{i}", created=T0 + i) for i in range(12)]
    answers = await asyncio.gather(*(put(client, publisher, key, b) for b in bodies))
    statuses = sorted(a.status for a in answers)
    assert statuses == [201] + [409] * 11, statuses
    winner = next(b for b, a in zip(bodies, answers, strict=True) if a.status == 201)
    assert await held(client, key) == winner


async def test_a_held_version_that_cannot_be_opened_is_replaced(
        client: TestClient, publisher: Publisher, data_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    key = record_key()
    assert (await put(client, publisher, key, record(publisher, key, created=T0))).status == 201
    (data_dir / "records" / key).write_bytes(b"rotted on disk")
    body = record(publisher, key, created=T0 - 100)  # older, other content: nothing blocks it
    resp = await put(client, publisher, key, body)
    assert resp.status == 200, await resp.text()
    assert await held(client, key) == body
    assert any(f"record {key}: the held version cannot be opened" in r.getMessage()
               for r in caplog.records)

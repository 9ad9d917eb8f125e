"""Cheap checks first, then bounded bytes in flight: the node-wide body budget (503 after a
wait), the stall deadline (408), and the budget itself (storage_node.budget)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from storage_network.wire.write_auth import Publisher
from storage_node.app import create_app
from storage_node.budget import BodyBudget
from storage_node.config import NodeConfig
from storage_node.errors import Busy, ConfigError

from .samples import signed_headers, stripe

# -- the budget alone ------------------------------------------------------------------------


async def test_room_is_granted_in_arrival_order_and_given_back() -> None:
    budget = BodyBudget(100, wait=30.0)
    big: dict[str, Any] = {}
    await budget.reserve(big, 70, "a")  # type: ignore[arg-type]
    assert budget.in_use == 70
    order: list[str] = []

    async def take(name: str, nbytes: int) -> dict[str, Any]:
        request: dict[str, Any] = {}
        await budget.reserve(request, nbytes, name)  # type: ignore[arg-type]
        order.append(name)
        return request

    second = asyncio.create_task(take("second", 60))
    await asyncio.sleep(0)
    third = asyncio.create_task(take("third", 10))  # fits, but arrived after a waiter
    await asyncio.sleep(0)
    assert (order, budget.waiting) == ([], 2)
    budget.release(big)  # type: ignore[arg-type]
    second_request, third_request = await second, await third
    assert order == ["second", "third"] and budget.in_use == 70
    budget.release(second_request)  # type: ignore[arg-type]
    budget.release(third_request)  # type: ignore[arg-type]
    budget.release(third_request)  # type: ignore[arg-type]  (twice: nothing more)
    assert budget.in_use == 0


async def test_a_body_larger_than_the_budget_goes_through_alone() -> None:
    budget = BodyBudget(100, wait=30.0)
    request: dict[str, Any] = {}
    await budget.reserve(request, 10_000, "huge")  # type: ignore[arg-type]
    assert budget.in_use == 100
    budget.release(request)  # type: ignore[arg-type]
    assert budget.in_use == 0


async def test_a_request_that_waits_too_long_is_busy_and_lets_others_in() -> None:
    budget = BodyBudget(100, wait=0.05)
    holder: dict[str, Any] = {}
    await budget.reserve(holder, 50, "holder")  # type: ignore[arg-type]
    with pytest.raises(Busy, match=r"busy: 50 of 100 bytes .* the big body \(80 bytes\) "
                                   r"waited 0.05 s for room"):
        await budget.reserve({}, 80, "big")  # type: ignore[arg-type]
    assert (budget.in_use, budget.waiting) == (50, 0)
    small: dict[str, Any] = {}
    await budget.reserve(small, 50, "small")  # type: ignore[arg-type]
    assert budget.in_use == 100


# -- an in-process node ----------------------------------------------------------------------

CAPACITY = 4096


@pytest.fixture
async def tight(tmp_path: Path, publisher: Publisher) -> AsyncIterator[TestClient]:
    """A node whose body budget holds 4 KiB, waits 0.3 s for room, and allows a 1 s stall."""
    config = NodeConfig(tmp_path / "data", "node-1", {publisher.name: publisher.public},
                        max_shard_bytes=64 * 1024, max_body_bytes_in_flight=CAPACITY,
                        body_wait_seconds=0.3, body_stall_seconds=1.0)
    async with TestClient(TestServer(create_app(config))) as client:
        yield client


def tmp_files(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "data" / "tmp").iterdir())


async def test_requests_beyond_the_budget_wait_then_get_503_and_unsigned_ones_never_wait(
        tight: TestClient, publisher: Publisher, tmp_path: Path) -> None:
    (sid, body), (sid2, body2), *_ = stripe(size=3000)
    go_on = asyncio.Event()

    async def held_back() -> AsyncIterator[bytes]:
        yield body[:100]
        await go_on.wait()
        yield body[100:]

    path = f"/shards/{sid}"
    holder = asyncio.create_task(tight.put(
        path, data=held_back(), headers=signed_headers(publisher, "PUT", path, body)))
    for _ in range(200):  # until the holder's body is being read (bounded)
        if tmp_files(tmp_path):
            break
        await asyncio.sleep(0.01)
    assert tmp_files(tmp_path)
    # a chunked body reserves the route's cap: the whole budget here
    path2 = f"/shards/{sid2}"
    resp = await tight.put(path2, data=body2)  # unsigned: refused at once, no room needed
    assert resp.status == 401
    resp = await tight.put(path2, data=body2,
                           headers=signed_headers(publisher, "PUT", path2, body2))
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert (await resp.text()).startswith(f"error: busy: {CAPACITY} of {CAPACITY} bytes")
    go_on.set()
    assert (await holder).status == 201
    resp = await tight.put(path2, data=body2,
                           headers=signed_headers(publisher, "PUT", path2, body2))
    assert resp.status == 201
    assert tmp_files(tmp_path) == []


async def test_a_stalled_body_is_408_leaves_nothing_and_closes(
        tight: TestClient, publisher: Publisher, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    (sid, body), *_ = stripe(size=3000)
    path = f"/shards/{sid}"
    headers = "".join(f"{k}: {v}\r\n" for k, v in
                      signed_headers(publisher, "PUT", path, body).items())
    reader, writer = await asyncio.open_connection("127.0.0.1", tight.port)
    writer.write(f"PUT {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {len(body)}"
                 f"\r\n\r\n".encode() + body[:10])
    answer = await asyncio.wait_for(reader.read(), 30)  # to the end: the node closes
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(f"error: shard body stalled: no byte for 1 s after 10 of "
                           f"{len(body)} bytes".encode())
    assert tmp_files(tmp_path) == []
    assert (await tight.get(path)).status == 404
    refusals = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(refusals) == 1 and refusals[0].exc_info is None


@pytest.mark.parametrize("field", ["body_stall_seconds", "body_wait_seconds"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_seconds_are_a_config_error(tmp_path: Path, publisher: Publisher, field: str,
                                        value: float) -> None:
    config = NodeConfig(tmp_path, "node-1", {publisher.name: publisher.public})
    setattr(config, field, value)
    with pytest.raises(ConfigError, match=f"{field} must be a positive number of seconds"):
        config.validate()


def test_a_budget_of_no_bytes_is_a_config_error(tmp_path: Path, publisher: Publisher) -> None:
    config = NodeConfig(tmp_path, "node-1", {publisher.name: publisher.public},
                        max_body_bytes_in_flight=0)
    with pytest.raises(ConfigError, match="max_body_bytes_in_flight must be at least 1 byte"):
        config.validate()

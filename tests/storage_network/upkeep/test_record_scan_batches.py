"""The record scan's batch reads against a crafted node: a real aiohttp server lists
three records and answers ``POST /records/batch-get`` badly or with a false absence;
the scan must still see every copy, reading the node one key at a time (single
``GET /records/<key>``) exactly where the batch cannot be trusted."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from aiohttp import web

from nixshard.localnet import new_publisher
from storage_network.client import NetworkClient
from storage_network.config import init_network
from storage_network.upkeep.record_scan import RecordScan
from storage_network.wire.manifest import make_manifest
from storage_network.wire.record import seal_record
from storage_network.wire.shard_batch import encode_get_answer
from tests.support.servers import serve_app

PUBLISHER = new_publisher("scan-batch-1")[0]
ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"


def new_key() -> str:
    return "".join(ALPHABET[b % 32] for b in os.urandom(32))


def records() -> dict[str, bytes]:
    out = {}
    for _ in range(3):
        key = new_key()
        out[key] = seal_record(PUBLISHER, key, b"meta",
                               make_manifest("isa_l_rs_cauchy", 1, 0, []), 1_700_000_000)
    return dict(sorted(out.items()))


def garbage(_held: dict[str, bytes], _keys: list[str]) -> bytes:
    return b"\x00\x00\x00\x09not a frame"


def first_absent(held: dict[str, bytes], keys: list[str]) -> bytes:
    return b"".join(encode_get_answer(None if i == 0 else held[k]) for i, k in enumerate(keys))


def refused(_held: dict[str, bytes], _keys: list[str]) -> bytes:
    raise web.HTTPMethodNotAllowed("POST", ["GET"])


def oversized(_held: dict[str, bytes], keys: list[str]) -> bytes:
    return encode_get_answer(b"x" * (9 * 1024 * 1024)) * len(keys)


@pytest.mark.parametrize(("batch", "singles"), [
    (garbage, 3),       # malformed: every key alone
    (refused, 3),       # an older node without the route (405): every key alone
    (oversized, 3),     # over the batch cap: every key alone
    (first_absent, 1),  # an unsigned absence: that key alone, which the node does serve
])
async def test_the_scan_sees_every_copy_whatever_the_batch_answer(
        batch: Callable[[dict[str, bytes], list[str]], bytes], singles: int) -> None:
    held = records()
    asked = {"batch": 0, "single": 0}

    async def listing(request: web.Request) -> web.Response:
        after, limit = request.query.get("after", ""), int(request.query.get("limit", 10**6))
        rows = [f"{k} {len(v)} 1.0 1.0\n" for k, v in held.items() if k > after]
        return web.Response(text="".join(rows[:limit]))

    async def batch_get(request: web.Request) -> web.Response:
        asked["batch"] += 1
        keys = (await request.json())["keys"]
        return web.Response(body=batch(held, keys))

    async def single(request: web.Request) -> web.Response:
        asked["single"] += 1
        return web.Response(body=held[request.match_info["key"]])

    app = web.Application()
    app.router.add_get("/records", listing)
    app.router.add_post("/records/batch-get", batch_get)
    app.router.add_get("/records/{key}", single)
    async with serve_app(app) as url:
        network = init_network([url], 1, 0, [PUBLISHER.public])
        async with NetworkClient(network, timeout=10.0) as net:
            scan = RecordScan(net)
            items = [item async for item in scan]
    assert [item.key for item in items] == list(held)
    assert all(item.newest is not None and not item.problems for item in items)
    assert [item.copies["node-1"].data for item in items] == list(held.values())
    assert asked == {"batch": 1, "single": singles} and not scan.unreachable

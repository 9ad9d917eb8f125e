"""Fetching maps from hostile nodes: capped reads, forged epochs, the refresher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from storage_network.config import Network
from storage_network.network_map import (
    Bootstrap,
    MapRefresher,
    SignedMap,
    fetch_map_chain,
    fetch_newest_map,
)
from storage_network.network_map.transport import put_map
from storage_network.wire.write_auth import Publisher
from tests.support.servers import serve_app

from .maps import first_epoch, maintainers, next_epoch, node_entries, sign


@asynccontextmanager
async def map_server(maps: dict[int, bytes]) -> AsyncIterator[str]:
    """A node-like server answering ``GET /map`` (the highest key) and ``/map/{epoch}``
    with the given bytes, whatever they are."""

    async def newest(request: web.Request) -> web.Response:
        if not maps:
            raise web.HTTPNotFound()
        return web.Response(body=maps[max(maps)])

    async def one(request: web.Request) -> web.Response:
        data = maps.get(int(request.match_info["epoch"]))
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data)

    app = web.Application()
    app.router.add_get("/map", newest)
    app.router.add_get("/map/{epoch}", one)
    async with serve_app(app) as url:
        yield url


@pytest.fixture
def chain() -> tuple[list[Publisher], list[SignedMap]]:
    keys = maintainers("m", 3)
    _, nodes = node_entries(["http://127.0.0.1:9401", "http://127.0.0.1:9402",
                             "http://127.0.0.1:9403"])
    e1 = sign(first_epoch(nodes, keys), keys[0], keys[1])
    e2 = sign(next_epoch(e1, k=1), keys[0], keys[1])
    e3 = sign(next_epoch(e2, m=2), keys[1], keys[2])
    return keys, [e1, e2, e3]


def bootstrap(keys: list[Publisher]) -> Bootstrap:
    return Bootstrap(tuple(k.public for k in keys), 2, (), "test bootstrap")


async def test_forged_epoch_from_one_node_valid_from_another(
        chain: tuple[list[Publisher], list[SignedMap]],
        caplog: pytest.LogCaptureFixture) -> None:
    keys, (e1, e2, e3) = chain
    forged2 = sign(next_epoch(e1, k=1, m=0), keys[2])
    forged3 = sign(next_epoch(forged2), keys[2])
    liar = {1: e1.to_bytes(), 2: forged2.to_bytes(), 3: forged3.to_bytes()}
    honest = {1: e1.to_bytes(), 2: e2.to_bytes(), 3: e3.to_bytes()}
    async with map_server(liar) as bad, map_server(honest) as good:
        got = await fetch_map_chain(bootstrap(keys), [bad, good])
    assert [m.digest() for m in got] == [e1.digest(), e2.digest(), e3.digest()]
    assert "epoch 2 ignored: epoch 2 has 1 valid signature" in caplog.text


async def test_chain_stops_at_the_first_epoch_nobody_serves_validly(
        chain: tuple[list[Publisher], list[SignedMap]]) -> None:
    keys, (e1, e2, e3) = chain
    claims_far = sign(next_epoch(e3), keys[0])  # epoch 4, too few signatures
    async with map_server({1: e1.to_bytes(), 2: e2.to_bytes(),
                           4: claims_far.to_bytes()}) as url:
        got = await fetch_map_chain(e1, [url])
    assert [m.epoch for m in got] == [2]


async def test_oversized_and_garbage_answers_are_ignored(
        chain: tuple[list[Publisher], list[SignedMap]],
        caplog: pytest.LogCaptureFixture) -> None:
    keys, (e1, e2, _) = chain
    async with map_server({2: b"x" * 5000}) as huge, map_server({2: b"{garbage"}) as junk, \
            map_server({1: e1.to_bytes(), 2: e2.to_bytes()}) as good:
        got = await fetch_map_chain(bootstrap(keys), [huge, junk], limit=4096)
        assert got == []
        newest = await fetch_newest_map(bootstrap(keys), [huge, junk, good], limit=4096)
    assert newest.epoch == 2
    assert "answer of 5000 bytes, at most 4096 expected" in caplog.text
    assert "not UTF-8 JSON" in caplog.text


async def test_refresher_hands_on_each_newer_network(
        chain: tuple[list[Publisher], list[SignedMap]]) -> None:
    keys, (e1, e2, e3) = chain
    served = {1: e1.to_bytes()}
    seen: list[Network] = []
    got_one = asyncio.Event()

    def on_network(network: Network) -> None:
        seen.append(network)
        got_one.set()

    async with map_server(served) as url:
        refresher = MapRefresher(Bootstrap(bootstrap(keys).maintainers, 2, (url,)),
                                 on_network=on_network, every=0.05)
        async with refresher:
            await asyncio.wait_for(got_one.wait(), 30)
            got_one.clear()
            served[2], served[3] = e2.to_bytes(), e3.to_bytes()
            while refresher.current is None or refresher.current.epoch < 3:
                await asyncio.wait_for(got_one.wait(), 30)
                got_one.clear()
    assert [(n.k, n.m) for n in seen][0] == (2, 1)
    assert (seen[-1].k, seen[-1].m) == (1, 2)
    assert refresher.current is not None and refresher.current.digest() == e3.digest()


async def test_refresher_callback_failure_is_logged(
        chain: tuple[list[Publisher], list[SignedMap]],
        caplog: pytest.LogCaptureFixture) -> None:
    keys, (e1, e2, _) = chain

    async def broken(network: Network) -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.INFO)
    async with map_server({1: e1.to_bytes(), 2: e2.to_bytes()}) as url:
        refresher = MapRefresher(e1, on_network=broken, urls=[url])
        assert (await refresher.refresh()) is not None
        assert await refresher.refresh() is None  # nothing newer
    assert "the callback for epoch 2 failed" in caplog.text
    with pytest.raises(ValueError, match="positive"):
        MapRefresher(e1, every=0)


async def test_a_node_answering_another_epoch_is_ignored(
        chain: tuple[list[Publisher], list[SignedMap]],
        caplog: pytest.LogCaptureFixture) -> None:
    keys, (e1, e2, e3) = chain
    async with map_server({1: e1.to_bytes(), 2: e3.to_bytes(), 3: e3.to_bytes()}) as url:
        assert await fetch_map_chain(e1, [url]) == []
    assert "asked for epoch 2, got epoch 3" in caplog.text


async def test_a_long_refusal_is_cut_not_fatal(
        chain: tuple[list[Publisher], list[SignedMap]]) -> None:
    _, (e1, _, _) = chain

    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=409, text="error: " + "x" * 100000)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_put("/map", refuse)
    async with serve_app(app) as url, aiohttp.ClientSession() as session:
        status, text = await put_map(session, url, e1)
    assert status == 409 and text.startswith("error: xxx") and len(text) <= 300

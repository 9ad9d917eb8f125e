"""Walking a listing page by page: a node whose pages break the rules is a failing node.

A real aiohttp server answers ``GET /shards`` with crafted pages; the real
HTTP node client and :func:`walk_shards` read it.  A real node refuses a
malformed ``after`` or ``limit`` with 400 and the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from storage_network.config import NodeInfo
from storage_network.errors import NodeAnswerError, NodeStatusError
from storage_network.nodes.http import NodeClient
from storage_network.nodes.listing_pages import walk_records, walk_shards
from tests.support.servers import serve_app

from .conftest import NodeUnderTest

ROOTS = [f"{i:02x}" + "0" * 62 for i in range(10)]


def lines(ids: list[str]) -> str:
    return "".join(f"{sid} 100 1.000\n" for sid in ids)


@asynccontextmanager
async def fake_node(path: str, handler: Callable[[web.Request], Awaitable[web.Response]]
                    ) -> AsyncIterator[NodeClient]:
    """The real node client of a server answering ``GET path`` with ``handler``."""
    app = web.Application()
    app.router.add_get(path, handler)
    async with serve_app(app) as url, aiohttp.ClientSession() as session:
        client = NodeClient(NodeInfo("node-x", url), session, timeout=10.0)
        try:
            yield client
        finally:
            await client.close()


@asynccontextmanager
async def serving(answer: Callable[[str, int], str]
                  ) -> AsyncIterator[tuple[NodeClient, list[tuple[str, int]]]]:
    """A node client of a server answering ``GET /shards?after&limit`` with ``answer``,
    and the ``(after, limit)`` of every request it got."""
    asked: list[tuple[str, int]] = []

    async def shards(request: web.Request) -> web.Response:
        after, limit = request.query.get("after", ""), int(request.query["limit"])
        asked.append((after, limit))
        return web.Response(text=answer(after, limit))

    async with fake_node("/shards", shards) as client:
        yield client, asked


def honest(after: str, limit: int) -> str:
    ids = [f"{root}.0" for root in ROOTS]
    return lines([sid for sid in ids if sid > after][:limit])


async def test_an_honest_node_is_walked_page_by_page() -> None:
    async with serving(honest) as (client, asked):
        got = [row.id async for row in walk_shards(client, page=4)]
        assert got == [f"{root}.0" for root in ROOTS]
        # pages of 4, 4 and 2: the short one is the last
        assert [limit for _, limit in asked] == [4, 4, 4]
        assert asked[1][0] == got[3]


@pytest.mark.parametrize(("answer", "why"), [
    (lambda after, limit: lines([f"{ROOTS[2]}.0", f"{ROOTS[1]}.0"]), "out of order"),
    (lambda after, limit: lines([f"{ROOTS[1]}.0"] * 2), "out of order"),
    (lambda after, limit: lines([f"{root}.0" for root in ROOTS[:limit + 1]]), "more than"),
    # a node that starts every page from the beginning again
    (lambda after, limit: lines([f"{root}.0" for root in ROOTS[:limit]]), "out of order"),
])
async def test_a_page_breaking_the_rules_fails_the_node(answer: Callable[[str, int], str],
                                                        why: str) -> None:
    async with serving(answer) as (client, _):
        with pytest.raises(NodeAnswerError, match=why):
            [row async for row in walk_shards(client, page=3)]


async def test_a_walk_stopped_early_leaves_no_request_behind() -> None:
    async with serving(honest) as (client, asked):
        walk = walk_shards(client, page=2)
        assert (await anext(walk)).id == f"{ROOTS[0]}.0"
        await walk.aclose()
        assert len(asked) <= 2


@pytest.mark.parametrize("query", ["after=..%2F..%2Fetc", "limit=0", "limit=x",
                                   "limit=99999999", "after=" + "a" * 81])
async def test_a_node_refuses_a_malformed_page_request(http_node: NodeUnderTest,
                                                       query: str) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/shards", "/records"):
            async with session.get(f"{http_node.url}{path}?{query}") as resp:
                assert resp.status == 400, (path, query)
                assert ("after" in query) == ("after" in await resp.text())


async def test_the_client_names_the_refusal(http_node: NodeUnderTest) -> None:
    async with aiohttp.ClientSession() as session:
        client = NodeClient(NodeInfo("node-1", http_node.url), session, timeout=10.0)
        with pytest.raises(NodeStatusError) as caught:
            await client.list_records("UPPER", 5)
        assert caught.value.status == 400
        await client.close()


async def test_a_record_listing_naming_a_non_key_fails_the_node() -> None:
    keys = ["0" * 32, "1" * 31 + "/", "2" * 32]

    async def records(request: web.Request) -> web.Response:
        return web.Response(text="".join(f"{k} 10 1.000 1.000\n" for k in keys))

    async with fake_node("/records", records) as client:
        with pytest.raises(NodeAnswerError, match="not a valid name"):
            [row async for row in walk_records(client, page=5)]

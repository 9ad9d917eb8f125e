"""Slow and idle clients lose their connections (http_serving.server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.support.http_serving import serving

BOUND = 20.0  # a generous bound on how long a guard may take to act (not a timing claim)


async def hello(_: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def server() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/", hello)
    async with serving(app, idle_timeout=0.6) as port:
        yield port


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    return await asyncio.wait_for(reader.read(), BOUND)


async def test_a_request_head_that_trickles_is_cut_off(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
    await writer.drain()
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_a_whole_request_is_answered_and_kept_alive_until_idle(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
    assert head.startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(reader.readexactly(5), BOUND) == b"hello"
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a second request on the same connection
    await writer.drain()
    rest = await closed_by_server(reader)
    assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b"hello")
    writer.close()

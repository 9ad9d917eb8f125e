"""Listing endpoints: ``GET /shards`` and ``GET /records``.

Audit, repair and garbage collection need to know what a node holds.  Both
answers are ``text/plain`` streams, one object a line, sorted by name,
written fan-out directory by fan-out directory so a node with millions of
shards never builds the whole list in memory::

    GET /shards   -> "<shard id> <size bytes> <mtime unix seconds>\\n" ...
    GET /records  -> "<record key> <size bytes> <mtime> <atime>\\n" ...

Times are float seconds; ``atime`` of a record is when a reader last
fetched it (the node sets it on ``GET``, see :mod:`storage_node.routes.records`).
Reads are open, as every read of a node is: what a node holds is public.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from http_serving.errors import start_answer

from ..appkeys import STORE

_TEXT = "text/plain; charset=utf-8"


async def list_shards(request: web.Request) -> web.StreamResponse:
    """Stream every stored shard as ``<id> <size> <mtime>`` lines."""
    store = request.app[STORE]
    resp = web.StreamResponse(headers={"Content-Type": _TEXT, "Cache-Control": "no-store"})
    await start_answer(request, resp)
    for fanout in range(256):
        entries = await asyncio.to_thread(store.list_shard_dir, fanout)
        if entries:
            await resp.write("".join(f"{e.id} {e.size} {e.mtime:.3f}\n"
                                     for e in entries).encode())
    await resp.write_eof()
    return resp


async def list_records(request: web.Request) -> web.Response:
    """Answer every stored record as ``<key> <size> <mtime> <atime>`` lines."""
    store = request.app[STORE]
    entries = await asyncio.to_thread(store.list_records)
    text = "".join(f"{e.key} {e.size} {e.mtime:.3f} {e.atime:.3f}\n" for e in entries)
    return web.Response(text=text, content_type="text/plain", headers={"Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    """Register the listing routes on ``app``."""
    app.router.add_get("/shards", list_shards)
    app.router.add_get("/records", list_records)

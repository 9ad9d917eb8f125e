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

Pages: ``?after=<name>`` starts past that name and ``?limit=<count>`` (1 to
:data:`MAX_PAGE`) stops after that many lines, so a reader walks a node of
any size holding one page at a time (an answer shorter than ``limit`` is
the last page).  Without them the whole listing streams, as before.  A
malformed ``after`` or ``limit`` is answered 400 with the reason.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from http_serving.errors import start_answer

from ..appkeys import STORE
from ..errors import BadRequest

_TEXT = "text/plain; charset=utf-8"
MAX_PAGE = 1_000_000
"""Most lines one page of a listing may ask for."""
_AFTER_RE = re.compile(r"\A[0-9a-z.]{0,80}\Z")
_FANOUT_RE = re.compile(r"\A[0-9a-f]{2}")
"""A shard id's fan-out directory is named by its first two hex digits."""


def _page(request: web.Request) -> tuple[str, int | None]:
    """``(after, limit)`` of a listing request; ``("", None)`` when it asks for all.

    Raises:
        BadRequest: ``after`` is not a name a listing could hold, or
            ``limit`` is not a count from 1 to :data:`MAX_PAGE`.
    """
    after = request.query.get("after", "")
    if not _AFTER_RE.fullmatch(after):
        raise BadRequest(f"after {after[:40]!r}: not a shard id or record key")
    text = request.query.get("limit")
    if text is None:
        return after, None
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise BadRequest(f"limit {text[:20]!r}: not a count from 1 to {MAX_PAGE}")
    return after, int(text)


async def list_shards(request: web.Request) -> web.StreamResponse:
    """Stream the stored shards past ``after`` (up to ``limit``) as ``<id> <size> <mtime>``
    lines, fan-out directory by fan-out directory."""
    after, limit = _page(request)
    store = request.app[STORE]
    resp = web.StreamResponse(headers={"Content-Type": _TEXT, "Cache-Control": "no-store"})
    await start_answer(request, resp)
    left = limit
    first = int(after[:2], 16) if _FANOUT_RE.match(after) else 0
    for fanout in range(first, 256):
        entries = await asyncio.to_thread(store.list_shard_dir, fanout, after, left)
        if left is not None:
            left -= len(entries)
        if entries:
            await resp.write("".join(f"{e.id} {e.size} {e.mtime:.3f}\n"
                                     for e in entries).encode())
        if left == 0:
            break
    await resp.write_eof()
    return resp


async def list_records(request: web.Request) -> web.Response:
    """Answer the stored records past ``after`` (up to ``limit``) as
    ``<key> <size> <mtime> <atime>`` lines."""
    after, limit = _page(request)
    store = request.app[STORE]
    entries = await asyncio.to_thread(store.list_records, after, limit)
    text = "".join(f"{e.key} {e.size} {e.mtime:.3f} {e.atime:.3f}\n" for e in entries)
    return web.Response(text=text, content_type="text/plain", headers={"Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    """Register the listing routes on ``app``."""
    app.router.add_get("/shards", list_shards)
    app.router.add_get("/records", list_records)

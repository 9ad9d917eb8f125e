"""Sending a body that is rebuilt while it goes out (NARs, build logs).

The status and Content-Length go out first; if the network then fails to
rebuild a piece, the connection is aborted, so the client sees a short
transfer and never a clean end (the data-loss bug the design brief names).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from storage_network.errors import StorageNetworkError

log = logging.getLogger("nixshard.serve")


async def send_body(request: web.Request, resp: web.StreamResponse,
                    pieces: AsyncIterator[bytes], what: str) -> web.StreamResponse:
    """Prepare ``resp``, write ``pieces`` and end it; returns ``resp``.

    Raises:
        StorageNetworkError: a piece could not be rebuilt; the connection was
            aborted (``what`` names the body in the log line).
    """
    await resp.prepare(request)
    try:
        async for piece in pieces:
            await resp.write(piece)
    except StorageNetworkError as exc:
        log.error("%s: aborting the transfer after the headers: %s", what, exc)
        if request.transport is not None:
            request.transport.abort()
        raise
    await resp.write_eof()
    return resp

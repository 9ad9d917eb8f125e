"""``Expect: 100-continue`` handling: refuse a write before its body is sent.

curl and other clients send large bodies only after a ``100 Continue``; a
node that will refuse the write anyway (bad id, no signature, too large)
answers the final status instead, so the client does not upload for nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http import HttpVersion11

from .errors import RequestError
from .responses import error_response

ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


def expect_handler(precheck: Callable[[web.Request], object]) -> ExpectHandler:
    """An aiohttp expect handler that runs ``precheck`` before sending ``100 Continue``.

    ``precheck`` raises :class:`~storage_node.errors.RequestError` to refuse;
    the refusal is answered (and logged) as the final response.
    """

    async def handle(request: web.Request) -> web.StreamResponse | None:
        try:
            precheck(request)
        except RequestError as exc:
            return error_response(request, exc)
        if request.version != HttpVersion11:
            return None
        expect = request.headers.get("Expect", "")
        if expect.lower() != "100-continue":
            return web.Response(status=417, text=f"error: unsupported Expect: {expect[:40]!r}")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return None

    return handle

"""Reading request bodies: the errors of a body cut short, and whole small bodies.

A client that closes its connection before sending all of its body (less
than its Content-Length, or a chunked body without its last chunk) makes
aiohttp's body reader raise ``ConnectionResetError("Connection lost")``; a
malformed chunked body raises one of aiohttp's ``HttpProcessingError``.
Both are the client's: the upload is refused with 400 (nothing is kept),
never a 500.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .errors import UploadRejectedError

#: What reading a request body raises when the client sent less than it announced.
BODY_CUT_SHORT = (ConnectionError, HttpProcessingError)


def cut_short(what: str, received: int, declared: int | None,
              exc: BaseException) -> UploadRejectedError:
    """The 400 for a body of ``what`` that ended after ``received`` bytes."""
    of = f" of {declared}" if declared is not None else ""
    return UploadRejectedError(f"{what}: the body ended after {received}{of} bytes "
                               f"(the connection was lost: {exc})")


async def read_body(request: web.Request, what: str) -> bytes:
    """The whole body of ``request`` (aiohttp refuses one over ``client_max_size`` with 413).

    Raises:
        UploadRejectedError: the body was cut short (``what`` names it in the message).
    """
    try:
        return await request.read()
    except BODY_CUT_SHORT as exc:
        raise cut_short(what, request.content.total_bytes, request.content_length,
                        exc) from exc

"""Sending a body that is rebuilt while it goes out (NARs, build logs, upstream files).

The status and Content-Length go out first; if the body then cannot be
completed (the network fails to rebuild a piece, an upstream fails, a
verified frame turns out bad, the local disk fails with no way around it),
the connection is aborted, so the client sees a short transfer and never a
clean end (the data-loss bug the design brief names).  Such a failure is
expected: it is logged in one line without a traceback, the answer is
marked aborted (:func:`http_serving.metrics.mark_aborted`: the
access log and ``nixshard_gateway_aborted_total``, with the status the
client got) and the handler returns normally, so aiohttp neither logs
``Error handling request`` nor tries a second answer.  A client that goes
away mid-body is logged and marked the same way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from http_serving.errors import start_answer
from http_serving.metrics import mark_aborted
from nix_formats.errors import NixFormatError
from storage_network import StorageNetworkError

from .errors import CacheServerError

log = logging.getLogger("nixshard.serve")

# Failures of the body's source that are expected (no traceback is logged for them).
EXPECTED_FAILURES = (StorageNetworkError, CacheServerError, NixFormatError, OSError,
                     aiohttp.ClientError, TimeoutError)


async def send_body(request: web.Request, resp: web.StreamResponse,
                    pieces: AsyncIterator[bytes], what: str) -> web.StreamResponse:
    """Prepare ``resp``, write ``pieces`` and end it; returns ``resp``.

    Never raises for a failure after the headers (see the module docstring;
    ``what`` names the body in the log line): the connection is aborted and
    ``resp`` returned.  Cancellation propagates.
    """
    await start_answer(request, resp)
    written = 0
    sending = False  # True while writing to the client (its failures are not the source's)
    try:
        async for piece in pieces:
            sending = True
            await resp.write(piece)
            sending = False
            written += len(piece)
        sending = True
        await resp.write_eof()
    except Exception as exc:  # noqa: BLE001 - after the headers nothing may escape
        if sending and isinstance(exc, ConnectionError):
            log.info("%s: the client went away after %d bytes (%s)", what, written, exc)
            _abort(request, "client gone")
        elif isinstance(exc, EXPECTED_FAILURES):
            log.error("%s: aborting the transfer after %d bytes: %s", what, written, exc)
            _abort(request, "source failed")
        else:  # a bug: logged with its traceback, and still never a clean short end
            log.exception("%s: aborting the transfer after %d bytes", what, written)
            _abort(request, "internal error")
    finally:
        aclose = getattr(pieces, "aclose", None)
        if aclose is not None:
            await aclose()
    return resp


def _abort(request: web.Request, reason: str) -> None:
    mark_aborted(request, reason)
    if request.transport is not None:
        request.transport.abort()

"""Error responses and the refusal log: one place maps errors to HTTP answers.

Every refusal is answered with its status and a plain-text body
``error: <what was wrong>``, and logged as one line on the
``nixshard.node`` logger (404 misses only at DEBUG: readers probe nodes
for objects they may not hold).  A 408 (a body that stalled) also closes
the connection; a 503 (no room for the body yet) says ``Retry-After: 1``.

A client that goes away while its answer is being written (a connection
reset or a broken pipe on a write, aiohttp's ``ClientConnectionResetError``)
is not a storage error: it is logged once at INFO, ``client went away ...``,
without a traceback, the answer is marked aborted
(:func:`http_serving.metrics.mark_aborted`: the access log and
``nixshard_node_aborted_total``, with the status the client got), and
nothing more is sent.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from http_serving.metrics import mark_aborted
from storage_network.wire.write_auth import AUTH_SCHEME

from .errors import BodyStalled, Busy, NotFound, RequestError, Unauthorized

log = logging.getLogger("nixshard.node")

# Request key of the response prepared for a request (see remember_prepared).
_PREPARED: Any = web.RequestKey("nixshard_node_prepared", web.StreamResponse)


def _describe(request: web.BaseRequest) -> str:
    peer = request.remote or "?"
    return f"{request.method} {request.raw_path[:200]!r} from {peer}"


def error_response(request: web.BaseRequest, exc: RequestError) -> web.Response:
    """Log the refusal and build its ``error: ...`` text response."""
    level = logging.DEBUG if isinstance(exc, NotFound) else logging.WARNING
    log.log(level, "refused %s: %d %s", _describe(request), exc.status, exc.message)
    headers = {"WWW-Authenticate": AUTH_SCHEME} if isinstance(exc, Unauthorized) else None
    if isinstance(exc, Busy):
        headers = {"Retry-After": "1"}
    return web.Response(status=exc.status, text=f"error: {exc.message}", headers=headers)


async def _send_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send ``response`` now and close the connection once it is out: the rest of a
    stalled body is not worth waiting for (aiohttp would otherwise keep reading it
    for its lingering time)."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # closes after the buffered answer is flushed
    return response


async def remember_prepared(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: note the response whose headers went out, so an
    answer cut off by the client can be reported with the status it really had."""
    request[_PREPARED] = response


def _client_went_away(request: web.Request, exc: ConnectionError) -> web.StreamResponse:
    prepared: web.StreamResponse | None = request.get(_PREPARED)
    log.info("client went away during %s (%s: %s)", _describe(request),
             type(exc).__name__, str(exc)[:120] or "connection lost")
    if prepared is None:  # nothing was sent: there is no answer to cut off
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499, text="error: client went away")
    mark_aborted(request, "client gone")
    if request.transport is not None:
        request.transport.abort()
    return prepared  # already prepared: aiohttp sends nothing more


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn :class:`RequestError`, aiohttp's HTTP errors and crashes into text answers.

    A client gone mid-answer is logged at INFO (see the module docstring).
    Disk errors answer 500 (507 when the disk is full); other crashes 500.
    The app must register :func:`remember_prepared` on ``on_response_prepare``.
    """
    try:
        return await handler(request)
    except RequestError as exc:
        if isinstance(exc, BodyStalled):
            return await _send_and_close(request, error_response(request, exc))
        return error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        log.log(logging.DEBUG if exc.status == 404 else logging.WARNING,
                "refused %s: %d %s", _describe(request), exc.status, exc.reason)
        return web.Response(status=exc.status, text=f"error: {exc.reason.lower()}",
                            headers={k: v for k, v in exc.headers.items()
                                     if k.lower() == "allow"})
    except ConnectionError as exc:  # before OSError: a reset, a broken pipe
        return _client_went_away(request, exc)
    except OSError as exc:
        log.exception("storage error on %s", _describe(request))
        return web.Response(status=507 if exc.errno == errno.ENOSPC else 500,
                            text=f"error: storage error: {exc.strerror or exc}")
    except Exception:
        log.exception("internal error on %s", _describe(request))
        return web.Response(status=500, text="error: internal error (see the node's log)")

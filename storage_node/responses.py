"""Error responses and the refusal log: one place maps errors to HTTP answers.

Every refusal is answered with its status and a plain-text body
``error: <what was wrong>``, and logged as one line on the
``nixshard.node`` logger (404 misses only at DEBUG: readers probe nodes
for objects they may not hold).
"""

from __future__ import annotations

import errno
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from storage_network.auth import AUTH_SCHEME

from .errors import NotFound, RequestError, Unauthorized

log = logging.getLogger("nixshard.node")


def _describe(request: web.BaseRequest) -> str:
    peer = request.remote or "?"
    return f"{request.method} {request.raw_path[:200]!r} from {peer}"


def error_response(request: web.BaseRequest, exc: RequestError) -> web.Response:
    """Log the refusal and build its ``error: ...`` text response."""
    level = logging.DEBUG if isinstance(exc, NotFound) else logging.WARNING
    log.log(level, "refused %s: %d %s", _describe(request), exc.status, exc.message)
    headers = {"WWW-Authenticate": AUTH_SCHEME} if isinstance(exc, Unauthorized) else None
    return web.Response(status=exc.status, text=f"error: {exc.message}", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn :class:`RequestError`, aiohttp's HTTP errors and crashes into text answers.

    Disk errors answer 500 (507 when the disk is full); other crashes 500.
    """
    try:
        return await handler(request)
    except RequestError as exc:
        return error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        log.log(logging.DEBUG if exc.status == 404 else logging.WARNING,
                "refused %s: %d %s", _describe(request), exc.status, exc.reason)
        return web.Response(status=exc.status, text=f"error: {exc.reason.lower()}",
                            headers={k: v for k, v in exc.headers.items()
                                     if k.lower() == "allow"})
    except OSError as exc:
        log.exception("storage error on %s", _describe(request))
        return web.Response(status=507 if exc.errno == errno.ENOSPC else 500,
                            text=f"error: storage error: {exc.strerror or exc}")
    except Exception:
        log.exception("internal error on %s", _describe(request))
        return web.Response(status=500, text="error: internal error (see the node's log)")

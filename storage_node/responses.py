"""The node's one exception -> HTTP answer map (:data:`ERRORS`).

Handlers raise the exceptions of :mod:`storage_node.errors`; the shared
error middleware (:mod:`http_serving.errors`, installed by
:func:`storage_node.app.create_app`) answers them by this table, first match
first.  Every refusal is answered with its status and a plain-text body
``error: <what was wrong>``, and logged as one line on the ``nixshard.node``
logger (404 misses only at DEBUG: readers probe nodes for objects they may
not hold).  A 408 (a body that stalled) also closes the connection; a 503
(no room for the body yet) says ``Retry-After: 1``; a 401 says how to sign.

aiohttp's own HTTP errors (no such route, method not allowed, a body over
its limit) are answered the same way (``error: not found``), keeping their
``Allow`` header.  Disk errors answer 500 (507 when the disk is full), other
crashes 500, both logged with their traceback.

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

from aiohttp import web

from http_serving.errors import ErrorMap, Rule
from storage_network.wire.write_auth import AUTH_SCHEME

from .errors import (
    BadRequest,
    BodyStalled,
    Busy,
    Conflict,
    Forbidden,
    NotFound,
    OverQuota,
    PayloadTooLarge,
    PreconditionFailed,
    RequestError,
    Unauthorized,
    Unprocessable,
)

log = logging.getLogger("nixshard.node")


def _aiohttp_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() == "allow"}


def _storage_status(exc: OSError) -> int:
    return 507 if exc.errno == errno.ENOSPC else 500


ERRORS = ErrorMap([
    Rule(BadRequest, 400),  # BodyTruncated included
    Rule(Unauthorized, 401, headers={"WWW-Authenticate": AUTH_SCHEME}),
    Rule(OverQuota, 402),
    Rule(Forbidden, 403),  # Replayed included
    Rule(NotFound, 404),
    Rule(BodyStalled, 408, close=True),
    Rule(Conflict, 409),
    Rule(PreconditionFailed, 412),
    Rule(PayloadTooLarge, 413),
    Rule(Unprocessable, 422),
    Rule(Busy, 503, headers={"Retry-After": "1"}),
    Rule(RequestError, 400),  # a refusal without a class of its own
    Rule(web.HTTPException, lambda exc: exc.status, headers=_aiohttp_headers,
         message=lambda exc: exc.reason.lower()),
    Rule(ConnectionError, 499, message=lambda exc: "client went away", client_gone=True),
    Rule(OSError, _storage_status, message=lambda exc: f"storage error: {exc.strerror or exc}",
         crash="storage error"),
    Rule(Exception, 500, message=lambda exc: "internal error (see the node's log)",
         crash="internal error"),
], log, body="error: {}")
"""Every exception a node's handler may raise, and its answer (see the module docstring)."""


def error_response(request: web.BaseRequest, exc: RequestError) -> web.Response:
    """Log the refusal ``exc`` and build its ``error: ...`` text answer (for answers
    made outside the middleware: :mod:`storage_node.expect`)."""
    return ERRORS.answer(request, exc)

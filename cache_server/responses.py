"""The gateway's one exception -> HTTP answer map (:data:`ERRORS`).

Handlers and the auth middleware raise the exceptions of
:mod:`cache_server.errors`, :mod:`storage_network` and :mod:`nix_formats`;
the shared error middleware (:mod:`http_serving.errors`, installed by
:func:`cache_server.app.create_app`) answers them by this table, first match
first, with a plain-text body ``error: <message>`` and one log line on the
``nixshard.serve`` logger (404 at DEBUG: Nix asks for many absent paths).

400 bad request or a rejected upload; 401 missing or wrong credentials
(with ``WWW-Authenticate``); 402 an upload a node refused because the gateway's
signing key is over its quota there (the node's own message; not transient, so Nix
does not retry it); 403 refused; 404 absent (only when the network
says so) or not served here; 409 the path exists with another NarHash (also
:class:`~storage_network.errors.RecordConflictError` from a publish); 413
upload too large; 416 unsatisfiable range (with ``Content-Range``); 502 a
signed record with bad content, or an upstream cache that failed (its
404/403/410 answer 404, its 416 answers 416); 503 too few nodes or shards
reachable; 507 the gateway's own disk is full.  Anything else propagates
(a bug: aiohttp answers 500 and logs the traceback).
"""

from __future__ import annotations

import logging

from http_serving.errors import ErrorMap, Rule
from nix_formats.errors import NixFormatError
from storage_network.errors import (
    NotFoundError,
    QuotaExceededError,
    RecordConflictError,
    RecordError,
    StorageNetworkError,
)

from .errors import (
    BadRecordError,
    BadRequestError,
    ForbiddenError,
    InsufficientStorageError,
    NotServedError,
    PathConflictError,
    RangeNotSatisfiableError,
    UnauthorizedError,
    UploadTooLargeError,
)
from .upstream import UpstreamUnavailableError
from .upstream_ingest import UpstreamFileError

log = logging.getLogger("nixshard.serve")
AUTH_REALM = 'Basic realm="nixshard"'


def _upstream_status(exc: UpstreamUnavailableError) -> int:
    if exc.status in (404, 403, 410):
        return 404
    return 416 if exc.status == 416 else 502


ERRORS = ErrorMap([
    Rule((BadRequestError, NixFormatError), 400),  # UploadRejectedError included
    Rule(UnauthorizedError, 401, headers={"WWW-Authenticate": AUTH_REALM}),
    Rule(ForbiddenError, 403),
    Rule((NotServedError, NotFoundError), 404),  # NoSuchNarError included
    Rule((PathConflictError, RecordConflictError), 409),
    Rule(UploadTooLargeError, 413),
    Rule(RangeNotSatisfiableError, 416,
         headers=lambda exc: {"Content-Range": f"bytes */{exc.size}"}),
    Rule(UpstreamUnavailableError, _upstream_status),
    Rule((BadRecordError, RecordError, UpstreamFileError), 502),
    Rule(QuotaExceededError, 402),  # the gateway's signing key is over its quota on a node
    Rule(StorageNetworkError, 503),  # RecordUnavailableError, ChunkUnavailableError, ...
    Rule(InsufficientStorageError, 507),
], log, body="error: {}\n")
"""Every exception a gateway handler may raise on purpose, and its answer (see the
module docstring)."""

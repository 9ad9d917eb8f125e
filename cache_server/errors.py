"""The exception tree of :mod:`cache_server` and its one error -> HTTP status map."""

from __future__ import annotations

from aiohttp import web

from nix_formats.errors import NixFormatError
from storage_network.errors import (
    ChunkUnavailableError,
    NotFoundError,
    RecordConflictError,
    RecordError,
    RecordUnavailableError,
    StorageNetworkError,
)


class CacheServerError(Exception):
    """Base class of every error :mod:`cache_server` raises on purpose."""


class BadRequestError(CacheServerError):
    """The request names something that cannot exist (bad hash, traversal, bad file name)."""


class NoSuchNarError(CacheServerError):
    """The store path exists but the asked NAR URL is not the one its narinfo gives."""


class BadRecordError(CacheServerError):
    """A record verified by signature carries narinfo text that does not parse or match."""


class UploadRejectedError(BadRequestError):
    """An upload does not check out (NAR vs narinfo, bad NAR, missing NAR): nothing is stored."""


class UnauthorizedError(CacheServerError):
    """A write (or, with ``read_auth``, a read) without valid basic-auth credentials."""


class ForbiddenError(CacheServerError):
    """The request is understood but refused (uploads disabled, no trusted signature)."""


class UploadTooLargeError(CacheServerError):
    """An upload body is larger than the configured limit."""


class PathConflictError(CacheServerError):
    """An upload names a store path the network already holds with another NarHash
    (the first committed record wins: docs/consistency.md, "One path, one record")."""


class InsufficientStorageError(CacheServerError):
    """The gateway's own disk (staging, cache) cannot hold what the request needs."""


class RangeNotSatisfiableError(CacheServerError):
    """A ``Range`` header that selects no byte of the NAR."""

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size


AUTH_REALM = 'Basic realm="nixshard"'


def to_http(exc: Exception) -> web.HTTPException:
    """The HTTP error for ``exc`` (plain-text body ``error: <message>``).

    400 bad request or a rejected upload; 401 missing or wrong credentials
    (with ``WWW-Authenticate``); 403 refused; 404 absent (only when the
    network says so); 409 the path exists with another NarHash (also
    :class:`~storage_network.errors.RecordConflictError` from a publish);
    413 upload too large; 416 unsatisfiable range; 502 a signed record with
    bad content; 503 too few nodes or shards reachable; 507 the gateway's
    own disk is full.  Anything else is re-raised (a bug: aiohttp answers 500).
    """
    text = f"error: {exc}\n"
    if isinstance(exc, UnauthorizedError):
        return web.HTTPUnauthorized(text=text, headers={"WWW-Authenticate": AUTH_REALM})
    if isinstance(exc, ForbiddenError):
        return web.HTTPForbidden(text=text)
    if isinstance(exc, UploadTooLargeError):
        return web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=text)
    if isinstance(exc, RangeNotSatisfiableError):
        return web.HTTPRequestRangeNotSatisfiable(
            text=text, headers={"Content-Range": f"bytes */{exc.size}"})
    if isinstance(exc, PathConflictError | RecordConflictError):
        return web.HTTPConflict(text=text)
    if isinstance(exc, InsufficientStorageError):
        return web.HTTPInsufficientStorage(text=text)
    if isinstance(exc, BadRequestError | NixFormatError):
        return web.HTTPBadRequest(text=text)
    if isinstance(exc, NotFoundError | NoSuchNarError):
        return web.HTTPNotFound(text=text)
    if isinstance(exc, BadRecordError | RecordError):
        return web.HTTPBadGateway(text=text)
    if isinstance(exc, RecordUnavailableError | ChunkUnavailableError | StorageNetworkError):
        return web.HTTPServiceUnavailable(text=text)
    raise exc

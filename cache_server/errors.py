"""The exception tree of :mod:`cache_server` and its one error -> HTTP status map."""

from __future__ import annotations

from aiohttp import web

from nix_formats.errors import NixFormatError
from storage_network.errors import (
    ChunkUnavailableError,
    NotFoundError,
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


def to_http(exc: Exception) -> web.HTTPException:
    """The HTTP error for ``exc`` (plain-text body ``error: <message>``).

    400 bad request; 404 absent (only when the network says so); 502 a
    signed record with bad content; 503 too few nodes or shards reachable.
    """
    text = f"error: {exc}\n"
    if isinstance(exc, BadRequestError | NixFormatError):
        return web.HTTPBadRequest(text=text)
    if isinstance(exc, NotFoundError | NoSuchNarError):
        return web.HTTPNotFound(text=text)
    if isinstance(exc, BadRecordError | RecordError):
        return web.HTTPBadGateway(text=text)
    if isinstance(exc, RecordUnavailableError | ChunkUnavailableError | StorageNetworkError):
        return web.HTTPServiceUnavailable(text=text)
    raise exc

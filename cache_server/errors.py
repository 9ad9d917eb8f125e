"""The exception tree of :mod:`cache_server`.

Handlers raise these (and the exceptions of :mod:`storage_network` and
:mod:`nix_formats`); the gateway's one exception -> status map
(:data:`cache_server.responses.ERRORS`) turns them into plain-text
``error: <message>`` answers.  The status each class gets is in its docstring.
"""

from __future__ import annotations


class CacheServerError(Exception):
    """Base class of every error :mod:`cache_server` raises on purpose."""


class BadRequestError(CacheServerError):
    """400: the request names something that cannot exist (bad hash, traversal, bad file name)."""


class NotServedError(CacheServerError):
    """404: nothing is served under the asked name (a NAR upload not staged, a NAR too
    large to list, a path in neither the network nor the upstream caches)."""


class NoSuchNarError(NotServedError):
    """404: the store path exists but the asked NAR URL is not the one its narinfo gives."""


class BadRecordError(CacheServerError):
    """502: a record verified by signature carries narinfo text that does not parse or match."""


class UploadRejectedError(BadRequestError):
    """400: an upload does not check out (NAR vs narinfo, bad NAR, missing NAR); nothing
    is stored."""


class UnauthorizedError(CacheServerError):
    """401: a write (or, with ``read_auth``, a read) without valid basic-auth credentials."""


class ForbiddenError(CacheServerError):
    """403: the request is understood but refused (uploads disabled, no trusted signature)."""


class UploadTooLargeError(CacheServerError):
    """413: an upload body is larger than the configured limit."""


class PathConflictError(CacheServerError):
    """409: an upload names a store path the network already holds with another NarHash
    (the first committed record wins: docs/consistency.md, "One path, one record")."""


class InsufficientStorageError(CacheServerError):
    """507: the gateway's own disk (staging, cache) cannot hold what the request needs."""


class RangeNotSatisfiableError(CacheServerError):
    """416: a ``Range`` header that selects no byte of the NAR."""

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size

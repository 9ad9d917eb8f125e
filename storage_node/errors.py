"""The exception tree of :mod:`storage_node`.

Every error this package raises on purpose derives from
:class:`StorageNodeError`.  Errors that answer an HTTP request derive from
:class:`RequestError`: handlers raise them, and the node's one exception ->
status map (:data:`storage_node.responses.ERRORS`) turns them into plain-text
``error: <message>`` answers.  The status each class gets is in its docstring.
"""

from __future__ import annotations


class StorageNodeError(Exception):
    """Base class of every error :mod:`storage_node` raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(StorageNodeError):
    """The node configuration is unusable (no publisher keys, bad limits, bad node id)."""


class DataDirError(StorageNodeError):
    """The data directory cannot be created, opened or locked."""


class RequestError(StorageNodeError):
    """A request the node refuses (see :data:`storage_node.responses.ERRORS`)."""


class BadRequest(RequestError):
    """400: malformed id or key, malformed JSON, or other bad input."""


class BodyTruncated(BadRequest):
    """400: the client closed the connection before sending its whole body."""


class BodyStalled(RequestError):
    """408: the client sent no byte of its body for longer than the node's stall limit;
    the connection is closed after the answer."""


class Unauthorized(RequestError):
    """401: a write request without the publisher signature headers."""


class Forbidden(RequestError):
    """403: a write signed by an unknown key, with a bad signature or a stale date."""


class Replayed(Forbidden):
    """403: a signed write whose nonce this node already accepted (a replay)."""


class NotFound(RequestError):
    """404: no such shard or record (or no such route)."""


class PreconditionFailed(RequestError):
    """412: a conditional delete whose condition no longer holds (touched or replaced since)."""


class Conflict(RequestError):
    """409: a record older than the one held, or of another content (see
    :mod:`storage_network.wire.record`)."""


class PayloadTooLarge(RequestError):
    """413: the request body exceeds the node's limit for that kind of object."""


class Busy(RequestError):
    """503: the node is reading as many body bytes as it allows at once and no room
    came free within its wait (see :mod:`storage_node.budget`); try again later."""


class OverQuota(RequestError):
    """402: the write would take the publisher past its quota on this node
    (:mod:`storage_node.usage`); nothing of it was stored.  The message states
    the publisher, the bytes it keeps (with its writes in flight), its quota
    and the bytes the write needed.

    402 (Payment Required) because the publisher must get more room from the
    node's operator: it is no failure of the node (a 5xx, or 507, which the
    write path goes around as a full disk), no refusal of the key (403), and
    no limit on one request (413).
    """


class Unprocessable(RequestError):
    """422: a well-formed request whose body does not verify (shard proof, record signature)."""

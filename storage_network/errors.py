"""The exception tree of :mod:`storage_network`.

Every error raised on purpose by this package derives from
:class:`StorageNetworkError`, so callers can catch the package as a whole.
"""

from __future__ import annotations


class StorageNetworkError(Exception):
    """Base class of every error :mod:`storage_network` raises on purpose."""


class NetworkFileError(StorageNetworkError):
    """The network file (TOML) is missing, unreadable or inconsistent."""


class AuthError(StorageNetworkError):
    """A write request's publisher signature is missing, malformed, stale or wrong."""


class MissingSignatureError(AuthError):
    """A write request carries no publisher signature at all."""


class ReplayedWriteError(AuthError):
    """A signed write request was already accepted once (its nonce is used)."""


class ShardProofError(StorageNetworkError):
    """A shard body does not prove membership in the stripe its id names."""


class RecordError(StorageNetworkError):
    """A record is malformed, or its signature is missing or not from a trusted publisher."""


class NodeError(StorageNetworkError):
    """A node answered with an error, timed out or could not be reached."""


class NodeTimeoutError(NodeError):
    """A node request passed one of its deadlines.

    ``blame`` is ``"node"``, or ``"client"`` when the client's own event loop
    stalled meanwhile (then the node must not be held responsible).
    """

    def __init__(self, message: str, blame: str = "node") -> None:
        super().__init__(message)
        self.blame = blame


class NodeStatusError(NodeError):
    """A node answered with an unexpected HTTP status (``status``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NodeAnswerError(NodeError):
    """A node's answer is malformed, oversized, or contradicts the request:
    the node misbehaved (it is benched, not just demoted)."""


class QuotaExceededError(StorageNetworkError):
    """A node refused a write with 402: the publisher is over its quota on that node
    (:mod:`storage_node.usage`).  Not a failure of the node: a write that meets it
    stops (other nodes are not tried in its place) and writes no record.

    The message is the node's own one line: the publisher, the bytes it keeps
    there, its quota and the bytes the write needed.
    """

    STATUS = 402

    @classmethod
    def from_node_error(cls, exc: BaseException) -> QuotaExceededError | None:
        """The quota refusal ``exc`` is (a :class:`NodeStatusError` of status 402),
        else None."""
        if not isinstance(exc, NodeStatusError) or exc.status != cls.STATUS:
            return None
        text = str(exc)
        said = text.partition(f" -> {cls.STATUS} ")[2].removeprefix("error: ").strip()
        return cls(said or text)


class ChunkUnavailableError(StorageNetworkError):
    """Fewer than k verified shards of a chunk could be fetched."""


class NotFoundError(StorageNetworkError):
    """Enough nodes agree that the asked-for record does not exist."""


class RecordUnavailableError(StorageNetworkError):
    """Too few nodes answered to tell whether a record exists."""


class ShardBatchError(StorageNetworkError):
    """A batched shard transfer is malformed (see :mod:`storage_network.wire.shard_batch`)."""


class ShardTooLargeError(ShardBatchError):
    """A shard in a batched transfer is larger than the receiver accepts."""


class RecordConflictError(StorageNetworkError):
    """A record could not be published: the key already holds a record of other
    content (the first committed content wins; see :mod:`storage_network.wire.record`)."""


class CacheSecretError(StorageNetworkError):
    """A cache secret or keyring text is malformed (the message holds no key material)."""


class SealError(RecordError):
    """Sealed bytes do not open: another cache secret, a missing key, or tampering
    (the AEAD tag does not match).  A record whose sealed metadata does not open
    is not served."""


class MapError(StorageNetworkError):
    """A network map, a signature on it, a bootstrap file or a chain of epochs is
    malformed, oversized, or not validly signed (see :mod:`storage_network.network_map`);
    the message says why."""


class RecordTableError(StorageNetworkError):
    """The record table garbage collection and repair keep on disk
    (:mod:`storage_network.upkeep.record_table`) could not be made or written: its
    directory (``TMPDIR``) is full or unwritable.  Nothing was deleted after it."""

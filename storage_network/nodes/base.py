"""The NodeStore protocol: what readers, writers, audit, repair and gc ask of a node.

Every kind of node (our HTTP node in :mod:`storage_network.nodes.http`, an
S3-compatible bucket in :mod:`storage_network.nodes.s3`) implements it, is
picked by its URL scheme in :mod:`storage_network.nodes.registry`, and passes
the contract suite in ``tests/storage_network/nodes/``.  Nothing outside
``nodes/`` knows which kind it talks to.

Semantics every kind keeps:

Absent, unreachable, refused.
    "Absent" is an answer, not an error: ``get_shard`` and ``get_record``
    return None, ``has`` leaves the id out, ``delete_*`` return False.
    Anything else that keeps an operation from completing raises a
    :class:`~storage_network.errors.NodeError` naming the node:
    :class:`~storage_network.errors.NodeTimeoutError` (a deadline passed; its
    ``blame`` says whether the node or the client's own load caused it),
    :class:`~storage_network.errors.NodeStatusError` (the node refused: its
    ``status`` is the HTTP status, or the S3 one; 409 for a record refused
    as older or conflicting, 507 for a full node), and
    :class:`~storage_network.errors.NodeAnswerError` (a malformed or oversized
    answer).  The plain base class means unreachable (refused or reset
    connection, DNS, TLS).  A caller treats every NodeError as a failure of
    that node and moves to the next candidate.

Hostile answers.
    Every read is capped: a shard by the ``limit`` the caller passes (from
    :func:`~storage_network.wire.stripe.max_shard_bytes`), a record by
    :data:`~storage_network.wire.record.MAX_RECORD_BYTES`, a proof answer by
    :func:`~storage_network.wire.proofs.max_answer_bytes`, a listing by
    :data:`~storage_network.wire.listing.MAX_LISTING_ENTRIES` rows.  An answer
    past its cap, or one that does not parse, raises NodeAnswerError.  Bytes
    are never trusted: callers verify every shard against its stripe root
    and every record against its signature.

Timeouts measure the node.
    A request first waits for one of the node's slots inside the client;
    its deadlines start only then (:class:`~storage_network.nodes.limits.RequestGate`).

Idempotence and atomicity.
    ``put_shard``/``put_shards`` are idempotent: storing held bytes again
    succeeds (and heals a held copy that no longer matches, where the kind
    can tell).  A shard or record is visible to readers whole or not at all.
    ``put_record`` keeps the newest version of a key: a version older than
    the held one, or another content at the same version, is refused with
    status 409 (:func:`~storage_network.wire.record.replacement`).

Conditional deletes.
    ``delete_shard(id, before)`` deletes only a shard last written or
    touched before ``before``; ``delete_record(key, sha256)`` deletes only
    the record whose stored bytes have that digest.  Otherwise nothing
    changes and the answer is False (a race with a writer is never lost by
    the writer).  Kinds that cannot make this atomic document their window.

Touch.
    ``has(ids, touch=publisher)`` also marks the present shards as written
    now, so a gc that started earlier keeps them (:mod:`storage_network.upkeep.gc`).

Read times.
    ``list_records`` gives each record's last-read time: a ``get_record``
    without ``peek`` moves it to now, at most once per
    :data:`READ_TIME_RESOLUTION_SECONDS` (so reads stay cheap); a peek
    (the record scan of audit, gc, repair) never moves it.  gc's idle expiry reads it.

Writes are authorized.
    Our node checks the publisher's signature over each write; a bucket
    checks the writer's bucket credentials (the publisher key is then
    unused by the transport).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from storage_network.wire.listing import ListedRecord, ListedShard
from storage_network.wire.write_auth import Publisher

if TYPE_CHECKING:
    from storage_network.config import NodeInfo
    from storage_network.nodes.limits import RequestGate

READ_TIME_RESOLUTION_SECONDS = 60.0
"""A record's last-read time may lag the last read by up to this many seconds."""


@runtime_checkable
class NodeStore(Protocol):
    """One node of the network, of any kind (see the module docstring for semantics).

    Attributes:
        id: the node id from the network file (placement ranks ids).
        url: the node's URL as the network file gives it.
        queued: requests waiting inside the client for one of the node's slots now.
    """

    @property
    def id(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def queued(self) -> int: ...

    async def put_shard(self, shard_id: str, body: bytes, publisher: Publisher) -> bool:
        """Store one shard body; True when the node did not hold it before."""
        ...

    async def put_shards(self, shards: list[tuple[str, bytes]], publisher: Publisher
                         ) -> set[str]:
        """Store ``(shard id, body)`` pairs; the ids that were new.  All or none
        are acknowledged: any failure raises NodeError."""
        ...

    async def get_shard(self, shard_id: str, limit: int) -> bytes | None:
        """One shard body (at most ``limit`` bytes), None when absent."""
        ...

    async def get_shards(self, shard_ids: list[str], limits: list[int]
                         ) -> list[memoryview | None]:
        """The bodies of ``shard_ids`` in order (None: absent); ``limits[i]`` caps body i."""
        ...

    async def has(self, shard_ids: list[str], touch: Publisher | None = None) -> set[str]:
        """The subset of ``shard_ids`` the node claims to hold; with ``touch``, those
        are also marked as written now (for gc)."""
        ...

    async def delete_shard(self, shard_id: str, before: float, publisher: Publisher) -> bool:
        """Delete a shard last written or touched before ``before`` (unix seconds);
        False when absent or more recent."""
        ...

    async def list_shards(self, after: str = "", limit: int | None = None
                          ) -> list[ListedShard]:
        """The shards held whose ids sort after ``after`` (all: ``""``), in id order, at
        most ``limit`` (None: all): id, size (bytes), mtime (unix seconds).  Walk a
        node page by page with :func:`storage_network.nodes.listing_pages.walk_shards`."""
        ...

    async def prove(self, nonce: bytes, shard_ids: list[str]) -> bytes:
        """The answer to a storage challenge, in the format of
        :mod:`storage_network.wire.proofs` (one entry per id, absent ones marked)."""
        ...

    async def put_record(self, key: str, data: bytes, publisher: Publisher) -> int:
        """Store a signed record or tombstone: 201 stored, 200 replaced or already held;
        NodeStatusError 409 when the node holds a newer or conflicting version."""
        ...

    async def get_record(self, key: str, peek: bool = False) -> bytes | None:
        """The record bytes (at most MAX_RECORD_BYTES), None when absent.  ``peek``: a
        maintenance read that does not move the record's last-read time."""
        ...

    async def get_records(self, keys: list[str]) -> list[bytes | None]:
        """The bytes of each record of ``keys`` in order, None where none is held (an
        absence :meth:`get_record` must confirm before anyone acts on it); a
        maintenance read (no last-read time moves).  NodeAnswerError for an answer
        too large for one batch: the caller reads those records one at a time."""
        ...

    async def delete_record(self, key: str, sha256_hex: str, publisher: Publisher) -> bool:
        """Delete record ``key`` if its stored bytes have SHA-256 ``sha256_hex``;
        False when absent or replaced meanwhile."""
        ...

    async def list_records(self, after: str = "", limit: int | None = None
                           ) -> list[ListedRecord]:
        """The records held whose keys sort after ``after`` (all: ``""``), in key order,
        at most ``limit`` (None: all): key, size (bytes), mtime and last-read time
        (unix seconds).  Walk page by page with
        :func:`storage_network.nodes.listing_pages.walk_records`."""
        ...

    async def health(self) -> dict[str, Any]:
        """A JSON-ready object describing the node (at least ``{"status": "ok"}``
        when it answers)."""
        ...

    async def close(self) -> None:
        """Release what the node store holds of its own (not the shared session)."""
        ...


class GatedNode:
    """What every kind of node has the same way: its network-file entry (``info``) and
    the :class:`~storage_network.nodes.limits.RequestGate` its requests run through
    (``gate``), and the :class:`NodeStore` properties that follow from them.
    A kind sets both in its ``__init__``."""

    info: NodeInfo
    gate: RequestGate

    @property
    def id(self) -> str:
        """The node id."""
        return self.info.id

    @property
    def url(self) -> str:
        """The node's URL as the network file gives it."""
        return self.info.url

    @property
    def queued(self) -> int:
        """Requests to this node waiting inside the client for one of its slots right now."""
        return self.gate.queued

"""Store a payload, check it, then publish its record: the one write sequence.

Every write of a Nix thing into the network (a pushed store path, an
uploaded or upstream NAR, a build log) goes the same way
(docs/consistency.md): the payload's shards first
(:func:`store`, around missing nodes), then whatever check the payload
must pass (NarHash against the Nix database or the narinfo, NAR grammar),
then the signed record (:func:`publish`), which is the commit point.  A
reader never sees a record whose chunks are not all stored, and a payload
that fails its check leaves only unreferenced shards (gc removes them).
:func:`store_then_publish` runs the three steps; a caller that must wait
between them (a push writes a record only after its references' records)
calls :func:`store` and :func:`publish` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from storage_network import (
    Manifest,
    NetworkClient,
    Publisher,
    PublishStats,
    publish_record,
    store_payload,
)

__all__ = ["RecordContent", "StoredPayload", "publish", "store", "store_then_publish"]


@dataclass(frozen=True)
class RecordContent:
    """What a record says besides its manifest.

    Attributes:
        key: the record key (32 nix32 characters), e.g.
            :func:`nix_records.narinfo_record.record_key` or
            :func:`nix_records.build_logs.log_record_key`.
        metadata: the signed metadata bytes (a narinfo's UTF-8 text, a
            build log's header).
        links: record keys (plain) of the records this one needs while it
            stays: a narinfo's References, a pin's paths, a realisation's
            output and dependencies.  In a private cache they are keyed and
            written in the clear, so gc keeps closures whole without the
            secret (:func:`storage_network.publish_record`); a public record's
            metadata says them itself and they are not written.
        pin: the record is a pin (it never expires and keeps its links).
    """

    key: str
    metadata: bytes
    links: tuple[str, ...] = ()
    pin: bool = False


@dataclass(frozen=True)
class StoredPayload:
    """A payload whose shards are all stored and whose record is not written yet.

    Attributes:
        manifest: its chunks (``size``: payload bytes; ``frames_size``: bytes
            of the compressed frames).
        stats: what storing it did; ``stats.touched_at`` bounds how late the
            record may be published (:func:`publish` passes it on).
    """

    manifest: Manifest
    stats: PublishStats


async def store(net: NetworkClient, publisher: Publisher,
                pieces: Iterable[bytes]) -> StoredPayload:
    """Chunk, encode and store the payload ``pieces`` (byte pieces of any size).

    ``pieces`` is read on a helper thread; what it raises propagates.

    Raises:
        NodeError: a chunk could not get k + 1 shards stored
            (:func:`storage_network.store_payload`).
    """
    manifest, stats = await store_payload(net, publisher, pieces)
    return StoredPayload(manifest, stats)


async def publish(net: NetworkClient, publisher: Publisher, content: RecordContent,
                  stored: StoredPayload, expires: int | None = None) -> int:
    """Sign and write the record of ``stored`` (the commit point); returns its size in bytes.

    ``expires``: unix seconds the record's lease ends at (None: it never expires).

    Raises:
        RecordConflictError: the key holds a record of another content
            (the first committed content wins; nothing written).
        NodeError: fewer than ``record_replicas`` nodes took it, or too long
            passed since the payload's shards were touched
            (:func:`storage_network.publish_record`).
    """
    return await publish_record(net, publisher, content.key, content.metadata,
                                stored.manifest, touched_at=stored.stats.touched_at,
                                links=content.links, pin=content.pin, expires=expires)


async def store_then_publish(net: NetworkClient, publisher: Publisher, pieces: Iterable[bytes],
                             check: Callable[[StoredPayload], RecordContent]
                             ) -> tuple[StoredPayload, int]:
    """:func:`store` the payload, ``check`` it, then :func:`publish` its record.

    Args:
        pieces: the payload as byte pieces (read on a helper thread).
        check: called once all shards are stored; returns the record to
            publish, or raises to publish nothing (its exception propagates).

    Returns:
        The stored payload and the record's size in bytes.

    Raises:
        StorageNetworkError: from :func:`store` or :func:`publish`.
        Exception: whatever ``pieces`` or ``check`` raise.
    """
    stored = await store(net, publisher, pieces)
    content = check(stored)
    return stored, await publish(net, publisher, content, stored)

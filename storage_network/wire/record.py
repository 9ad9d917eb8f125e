"""Signed records: the commit point of one published payload.

A record binds opaque *metadata* (to nixshard: the narinfo text) to a
:class:`~storage_network.wire.manifest.Manifest`, under a *record key* (to
nixshard: the store path's hash part), signed by a publisher.  It is
written to nodes last, after every shard it references is stored.

Envelope (integers big-endian)::

    b"nixshard-record-v3\\n" | u16 len | publisher key name (utf-8)
    | signature (64 bytes, ed25519) | payload

    payload = u64 created (unix seconds) | u8 kind | u32 len | metadata | manifest bytes

``kind`` is 0 for a record and 1 for a *tombstone*: the signed statement
that the key was deleted at ``created`` (empty metadata, a manifest of no
chunks).  Version 2 envelopes (no kind byte: always a record) are still read.

A record with a *lease* is a version 4 envelope (``b"nixshard-record-v4\\n"``),
whose payload carries the signed end of the lease after the kind::

    payload = u64 created | u8 kind (0) | u64 expires (unix seconds) | u32 len
              | metadata | manifest bytes

Past ``expires`` the record counts as absent (:meth:`Record.expired`: readers
answer 404, garbage collection deletes it).  A record without a lease is
still written as version 3 (nodes and readers that predate leases keep
taking it) and never expires; a tombstone never has a lease.  Renewing a
lease is publishing the same content again, later, with a later
``expires``: a newer record of the same content replaces the older one
(:func:`replacement`).

``created`` is signed, so garbage collection can expire records by age
without trusting the nodes' clocks or file times, and so every reader and
node orders the versions of one key the same way (:func:`newest`):

- the version with the larger ``(created, SHA-256 of the envelope)`` is newer;
- a node keeps a newer version in place of an older one, except that a
  record never replaces a record of other *content* (:attr:`Record.content_id`,
  the chunk ids of its manifest: the payload, whatever its compression or
  erasure code): the first committed content of a key wins, until a newer
  tombstone deletes it (:func:`replacement`);
- a reader serves the newest version it finds, and a tombstone as absent.

The signature covers ``MAGIC | record key | b"\\n" | payload``, so a record
cannot be replayed under another key.
"""

from __future__ import annotations

import enum
import hashlib
import re
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from nacl.exceptions import BadSignatureError

from storage_network.errors import RecordError
from storage_network.wire.manifest import Manifest
from storage_network.wire.write_auth import Publisher, PublisherKey

MAGIC = b"nixshard-record-v3\n"
MAGIC_V2 = b"nixshard-record-v2\n"
MAGIC_V4 = b"nixshard-record-v4\n"
_PAYLOAD_HEAD = struct.Struct(">QBI")
_PAYLOAD_HEAD_V2 = struct.Struct(">QI")
_PAYLOAD_HEAD_V4 = struct.Struct(">QBQI")
_HEADS = {MAGIC: _PAYLOAD_HEAD, MAGIC_V2: _PAYLOAD_HEAD_V2, MAGIC_V4: _PAYLOAD_HEAD_V4}
RECORD, TOMBSTONE = 0, 1
MAX_RECORD_BYTES = 64 * 1024 * 1024
RECORD_KEY_RE = re.compile(r"\A[0-9a-z]{32}\Z")
"""What a record key looks like (every node refuses other keys before building a path)."""


@dataclass(frozen=True)
class Record:
    """An opened record or tombstone.

    Attributes:
        key: the record key it is signed for.
        publisher: the key that signed it.
        metadata: opaque bytes (to nixshard: the narinfo text); empty in a tombstone.
        manifest: the payload's chunks; no chunks in a tombstone.
        created: signed unix seconds.
        tombstone: True for the signed deletion of ``key`` at ``created``.
        digest: SHA-256 of the whole envelope (32 bytes).
        expires: signed unix seconds at which its lease ends; None: no lease,
            it never expires.
    """

    key: str
    publisher: PublisherKey
    metadata: bytes
    manifest: Manifest
    created: int
    tombstone: bool = False
    digest: bytes = field(default=b"", compare=False)
    expires: int | None = None

    def expired(self, now: float) -> bool:
        """True when the record has a lease and it ended at or before ``now`` (unix
        seconds): it then counts as absent."""
        return self.expires is not None and self.expires <= now

    @property
    def version(self) -> tuple[int, bytes]:
        """The sort key of versions of one key: larger is newer."""
        return self.created, self.digest

    @property
    def content_id(self) -> bytes:
        """SHA-256 over the manifest's chunk ids (32 bytes): equal for two records of
        the same payload chunked the same way, whatever their signatures,
        metadata, compression or erasure code.  Empty for a tombstone."""
        if self.tombstone:
            return b""
        return hashlib.sha256(b"".join(c.chunk_id for c in self.manifest.chunks)).digest()


class Replacement(enum.Enum):
    """What a node does with an incoming version of a key it holds (:func:`replacement`)."""

    STORE = "store"          # nothing held, or the incoming one supersedes it
    SAME = "same"            # the very bytes held: nothing to do
    OLDER = "older"          # refused: what is held is newer
    CONFLICT = "conflict"    # refused: a record of other content is held


def replacement(held: Record | None, incoming: Record) -> Replacement:
    """Whether ``incoming`` may replace ``held`` (see the module docstring)."""
    if held is None:
        return Replacement.STORE
    if incoming.digest == held.digest:
        return Replacement.SAME
    if incoming.version < held.version:
        return Replacement.OLDER
    if not held.tombstone and not incoming.tombstone \
            and held.content_id != incoming.content_id:
        return Replacement.CONFLICT
    return Replacement.STORE


def newest(versions: Iterable[Record]) -> Record | None:
    """The newest of ``versions`` (largest :attr:`Record.version`), None if there is none."""
    return max(versions, key=lambda r: r.version, default=None)


def _signed_message(record_key: str, payload: bytes | memoryview, magic: bytes = MAGIC) -> bytes:
    return magic + record_key.encode() + b"\n" + bytes(payload)


def _seal(publisher: Publisher, record_key: str, kind: int, metadata: bytes,
          manifest: Manifest, created: int | None, expires: int | None = None) -> bytes:
    when = int(time.time()) if created is None else created
    if expires is None:
        magic, head = MAGIC, _PAYLOAD_HEAD.pack(when, kind, len(metadata))
    else:
        magic, head = MAGIC_V4, _PAYLOAD_HEAD_V4.pack(when, kind, expires, len(metadata))
    payload = head + metadata + manifest.encode()
    name = publisher.name.encode()
    sig = publisher.sign(_signed_message(record_key, payload, magic))
    return magic + struct.pack(">H", len(name)) + name + sig + payload


def seal_record(publisher: Publisher, record_key: str, metadata: bytes,
                manifest: Manifest, created: int | None = None,
                expires: int | None = None) -> bytes:
    """Serialise and sign a record; returns the envelope bytes.

    Args:
        created: unix seconds the record counts as made at (default: now).
        expires: unix seconds its lease ends at (a version 4 envelope); None:
            no lease (version 3), it never expires.

    Raises:
        ValueError: ``expires`` is not an unsigned 64-bit number of seconds.
    """
    if expires is not None and not 0 < expires < 2 ** 64:
        raise ValueError(f"a lease must end at a positive unix time, not {expires}")
    return _seal(publisher, record_key, RECORD, metadata, manifest, created, expires)


def seal_tombstone(publisher: Publisher, record_key: str, codec: str, k: int, m: int,
                   created: int | None = None) -> bytes:
    """Serialise and sign a tombstone: ``record_key`` deleted at ``created`` (default: now)."""
    return _seal(publisher, record_key, TOMBSTONE, b"", Manifest(codec, k, m, ()), created)


def open_record(keys: dict[str, PublisherKey], record_key: str,
                data: bytes | memoryview) -> Record:
    """Verify an envelope against trusted ``keys`` and parse it.

    Raises:
        RecordError: malformed envelope, unknown publisher key, bad
            signature, or a malformed payload/manifest.
    """
    view = memoryview(data)
    if len(view) > MAX_RECORD_BYTES:
        raise RecordError(f"record of {len(view)} bytes exceeds {MAX_RECORD_BYTES}")
    magic = bytes(view[:len(MAGIC)])
    head = _HEADS.get(magic)
    if head is None:
        raise RecordError("not a nixshard record (bad magic)")
    off = len(MAGIC)
    if len(view) < off + 2:
        raise RecordError("record truncated in its header")
    (nlen,) = struct.unpack_from(">H", view, off)
    off += 2
    name = bytes(view[off:off + nlen]).decode("utf-8", "replace")
    off += nlen
    sig = bytes(view[off:off + 64])
    off += 64
    payload = view[off:]
    if len(sig) != 64 or len(payload) < head.size:
        raise RecordError("record truncated in its header")
    key = keys.get(name)
    if key is None:
        raise RecordError(f"record {record_key} is signed by untrusted key {name!r}")
    try:
        key.verify_key.verify(_signed_message(record_key, payload, magic), sig)
    except BadSignatureError as exc:
        raise RecordError(f"record {record_key}: bad signature by key {name!r}") from exc
    expires: int | None = None
    if head is _PAYLOAD_HEAD:
        created, kind, mlen = _PAYLOAD_HEAD.unpack_from(payload, 0)
    elif head is _PAYLOAD_HEAD_V4:
        created, kind, expires, mlen = _PAYLOAD_HEAD_V4.unpack_from(payload, 0)
    else:
        (created, mlen), kind = _PAYLOAD_HEAD_V2.unpack_from(payload, 0), RECORD
    if kind not in (RECORD, TOMBSTONE):
        raise RecordError(f"record {record_key}: unknown kind {kind}")
    if expires is not None and (kind == TOMBSTONE or expires == 0):
        raise RecordError(f"record {record_key}: a lease on a tombstone, or ending at 0")
    start = head.size
    if start + mlen > len(payload):
        raise RecordError(f"record {record_key}: metadata length {mlen} overruns the record")
    metadata = bytes(payload[start:start + mlen])
    manifest = Manifest.decode(payload[start + mlen:])
    if kind == TOMBSTONE and (metadata or manifest.chunks):
        raise RecordError(f"record {record_key}: a tombstone with metadata or chunks")
    return Record(record_key, key, metadata, manifest, created, kind == TOMBSTONE,
                  hashlib.sha256(view).digest(), expires)

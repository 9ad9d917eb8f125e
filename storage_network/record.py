"""Signed records: the commit point of one published payload.

A record binds opaque *metadata* (to nixshard: the narinfo text) to a
:class:`~storage_network.manifest.Manifest`, under a *record key* (to
nixshard: the store path's hash part), signed by a publisher.  It is
written to nodes last, after every shard it references is stored.

Envelope (integers big-endian)::

    b"nixshard-record-v2\\n" | u16 len | publisher key name (utf-8)
    | signature (64 bytes, ed25519) | payload

    payload = u64 created (unix seconds) | u32 len | metadata | manifest bytes

``created`` is signed, so garbage collection can expire records by age
without trusting the nodes' clocks or file times.

The signature covers ``MAGIC | record key | b"\\n" | payload``, so a record
cannot be replayed under another key.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError

from .auth import Publisher, PublisherKey
from .errors import RecordError
from .manifest import Manifest

MAGIC = b"nixshard-record-v2\n"
_PAYLOAD_HEAD = struct.Struct(">QI")
MAX_RECORD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Record:
    """An opened record: who signed it, when (unix seconds), its metadata and manifest."""

    key: str
    publisher: PublisherKey
    metadata: bytes
    manifest: Manifest
    created: int


def _signed_message(record_key: str, payload: bytes | memoryview) -> bytes:
    return MAGIC + record_key.encode() + b"\n" + bytes(payload)


def seal_record(publisher: Publisher, record_key: str, metadata: bytes,
                manifest: Manifest, created: int | None = None) -> bytes:
    """Serialise and sign a record; returns the envelope bytes.

    Args:
        created: unix seconds the record counts as made at (default: now).
    """
    when = int(time.time()) if created is None else created
    payload = _PAYLOAD_HEAD.pack(when, len(metadata)) + metadata + manifest.encode()
    name = publisher.name.encode()
    sig = publisher.sign(_signed_message(record_key, payload))
    return MAGIC + struct.pack(">H", len(name)) + name + sig + payload


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
    if bytes(view[:len(MAGIC)]) != MAGIC:
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
    if len(sig) != 64 or len(payload) < _PAYLOAD_HEAD.size:
        raise RecordError("record truncated in its header")
    key = keys.get(name)
    if key is None:
        raise RecordError(f"record {record_key} is signed by untrusted key {name!r}")
    try:
        key.verify_key.verify(_signed_message(record_key, payload), sig)
    except BadSignatureError as exc:
        raise RecordError(f"record {record_key}: bad signature by key {name!r}") from exc
    created, mlen = _PAYLOAD_HEAD.unpack_from(payload, 0)
    start = _PAYLOAD_HEAD.size
    if start + mlen > len(payload):
        raise RecordError(f"record {record_key}: metadata length {mlen} overruns the record")
    metadata = bytes(payload[start:start + mlen])
    manifest = Manifest.decode(payload[start + mlen:])
    return Record(record_key, key, metadata, manifest, created)

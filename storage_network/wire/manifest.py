"""Manifests: the ordered chunks of one payload and how to verify them.

Binary layout (all integers big-endian)::

    b"NXSM" | u8 version | [u8 flags, version 2 only] | u8 len | codec name (ascii)
    | u16 k | u16 m | u32 chunk count | count x entry

    entry = chunk id (32) | stripe root (32, see :mod:`storage_network.wire.stripe`)
          | u32 uncompressed size | u32 stored size (bytes erasure-coded)

72 bytes a chunk: at the default 256 KiB average chunk that is about 290
bytes per MiB of payload, whatever k and m are.

Version 1 (a public payload): the chunk id is the SHA-256 of the
uncompressed chunk and what is erasure-coded is its zstd frame.  Version 2
with flag bit 0 (:data:`SEALED`) is a private cache's payload
(:mod:`storage_network.coding.sealing`): the chunk id is keyed, what is
erasure-coded is the frame sealed under the chunk's key
(:data:`~storage_network.coding.sealing.SEAL_OVERHEAD` bytes longer), and
every entry's uncompressed size is written as 0.  The chunk keys and
sizes travel in the record's sealed metadata
(:mod:`storage_network.wire.sealed_metadata`); a reader holding the cache
secret puts them back on the refs (:meth:`Manifest.with_secrets`), and
audit, repair and gc need neither.  Public manifests are still written as
version 1.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from storage_network.coding.sealing import SEAL_OVERHEAD
from storage_network.errors import RecordError

MAGIC = b"NXSM"
VERSION = 1
VERSION_FLAGS = 2
SEALED = 0x01
_HEAD = struct.Struct(">HHI")
_ENTRY = struct.Struct(">32s32sII")
MAX_CHUNKS = 1 << 24
ENTRY_BYTES = _ENTRY.size
"""Bytes of one chunk's entry in the encoded manifest."""


@dataclass(frozen=True)
class ChunkRef:
    """One chunk: its id, stripe root, uncompressed size and stored size (bytes
    erasure-coded: its zstd frame, sealed in a private cache).

    ``key`` is the chunk's 32-byte key in a private cache, known only to
    holders of the cache secret: it is never part of the manifest's bytes.
    """

    chunk_id: bytes
    root: bytes
    size: int
    stored_size: int
    key: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True)
class Manifest:
    """The chunks of a payload, in order, with the erasure parameters used.

    ``sealed``: every chunk is sealed (a private cache's payload, see the
    module docstring).
    """

    codec: str
    k: int
    m: int
    chunks: tuple[ChunkRef, ...]
    sealed: bool = False

    @property
    def n(self) -> int:
        """Shards per chunk."""
        return self.k + self.m

    @property
    def size(self) -> int:
        """Uncompressed payload size in bytes."""
        return sum(c.size for c in self.chunks)

    @property
    def stored_size(self) -> int:
        """Bytes erasure-coded, all chunks together."""
        return sum(c.stored_size for c in self.chunks)

    def frame_size(self, ref: ChunkRef) -> int:
        """Bytes of the zstd frame of chunk ``ref`` (its stored size less the seal)."""
        return ref.stored_size - SEAL_OVERHEAD if self.sealed else ref.stored_size

    @property
    def frames_size(self) -> int:
        """Bytes of the concatenated zstd frames (the ``.nar.zst`` length)."""
        return sum(self.frame_size(c) for c in self.chunks)

    def with_secrets(self, secrets: Sequence[tuple[bytes, int]]) -> Manifest:
        """This manifest with each chunk's ``(key, uncompressed size)`` put back.

        Raises:
            RecordError: not one pair per chunk, or a key that is not 32 bytes.
        """
        if len(secrets) != len(self.chunks):
            raise RecordError(f"manifest: {len(secrets)} chunk keys for "
                              f"{len(self.chunks)} chunks")
        if any(len(key) != 32 for key, _ in secrets):
            raise RecordError("manifest: a chunk key that is not 32 bytes")
        return replace(self, chunks=tuple(
            ChunkRef(c.chunk_id, c.root, size, c.stored_size, key)
            for c, (key, size) in zip(self.chunks, secrets, strict=True)))

    def encode(self) -> bytes:
        """Serialise to the binary layout in the module docstring (keys never,
        and a sealed manifest's sizes as 0)."""
        codec = self.codec.encode("ascii")
        version = bytes([VERSION_FLAGS, SEALED]) if self.sealed else bytes([VERSION])
        parts = [MAGIC, version, bytes([len(codec)]), codec,
                 _HEAD.pack(self.k, self.m, len(self.chunks))]
        parts.extend(_ENTRY.pack(c.chunk_id, c.root, 0 if self.sealed else c.size,
                                 c.stored_size) for c in self.chunks)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Manifest:
        """Parse :meth:`encode` output.

        Raises:
            RecordError: bad magic or version, truncated or trailing bytes,
                impossible parameters.
        """
        view = memoryview(data)
        if bytes(view[:4]) != MAGIC or len(view) < 6:
            raise RecordError("manifest: bad magic")
        flags, start = 0, 5
        if view[4] == VERSION_FLAGS:
            if len(view) < 7:
                raise RecordError("manifest: truncated header")
            flags, start = view[5], 6
            if flags & ~SEALED:
                raise RecordError(f"manifest: unknown flags {flags:#04x}")
        elif view[4] != VERSION:
            raise RecordError(f"manifest: unsupported version {view[4]}")
        sealed = bool(flags & SEALED)
        clen = view[start]
        off = start + 1 + clen
        if len(view) < off + _HEAD.size:
            raise RecordError("manifest: truncated header")
        codec = bytes(view[start + 1:off]).decode("ascii", "replace")
        k, m, count = _HEAD.unpack_from(view, off)
        off += _HEAD.size
        if k < 1 or k + m > 256 or count > MAX_CHUNKS:
            raise RecordError(f"manifest: impossible k={k} m={m} chunks={count}")
        if len(view) != off + count * _ENTRY.size:
            raise RecordError(
                f"manifest: {len(view) - off} entry bytes for {count} chunks of {_ENTRY.size}")
        chunks = tuple(ChunkRef(*_ENTRY.unpack_from(view, off + i * _ENTRY.size))
                       for i in range(count))
        if sealed and any(c.stored_size < SEAL_OVERHEAD or c.size for c in chunks):
            raise RecordError("manifest: a sealed chunk shorter than its seal, or with "
                              "its size in the clear")
        return cls(codec, k, m, chunks, sealed)


def make_manifest(codec: str, k: int, m: int, chunks: Sequence[ChunkRef],
                  sealed: bool = False) -> Manifest:
    """A :class:`Manifest` from a sequence of chunk refs."""
    return Manifest(codec, k, m, tuple(chunks), sealed)

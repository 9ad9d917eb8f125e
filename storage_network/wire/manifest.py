"""Manifests: the ordered chunks of one payload and how to verify them.

Binary layout (all integers big-endian)::

    b"NXSM" | u8 version=1 | u8 len | codec name (ascii) | u16 k | u16 m
    | u32 chunk count | count x entry

    entry = chunk id (32, SHA-256 of the uncompressed chunk)
          | stripe root (32, see :mod:`storage_network.wire.stripe`)
          | u32 uncompressed size | u32 stored size (bytes of its zstd frame)

72 bytes a chunk: at the default 256 KiB average chunk that is about 290
bytes per MiB of payload, whatever k and m are.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from storage_network.errors import RecordError

MAGIC = b"NXSM"
VERSION = 1
_HEAD = struct.Struct(">HHI")
_ENTRY = struct.Struct(">32s32sII")
MAX_CHUNKS = 1 << 24


@dataclass(frozen=True)
class ChunkRef:
    """One chunk: plaintext id, stripe root, uncompressed and stored sizes (bytes)."""

    chunk_id: bytes
    root: bytes
    size: int
    stored_size: int


@dataclass(frozen=True)
class Manifest:
    """The chunks of a payload, in order, with the erasure parameters used."""

    codec: str
    k: int
    m: int
    chunks: tuple[ChunkRef, ...]

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
        """Bytes of the concatenated zstd frames (the ``.nar.zst`` length)."""
        return sum(c.stored_size for c in self.chunks)

    def encode(self) -> bytes:
        """Serialise to the binary layout in the module docstring."""
        codec = self.codec.encode("ascii")
        parts = [MAGIC, bytes([VERSION, len(codec)]), codec,
                 _HEAD.pack(self.k, self.m, len(self.chunks))]
        parts.extend(_ENTRY.pack(c.chunk_id, c.root, c.size, c.stored_size) for c in self.chunks)
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
        if view[4] != VERSION:
            raise RecordError(f"manifest: unsupported version {view[4]}")
        clen = view[5]
        off = 6 + clen
        if len(view) < off + _HEAD.size:
            raise RecordError("manifest: truncated header")
        codec = bytes(view[6:off]).decode("ascii", "replace")
        k, m, count = _HEAD.unpack_from(view, off)
        off += _HEAD.size
        if k < 1 or k + m > 256 or count > MAX_CHUNKS:
            raise RecordError(f"manifest: impossible k={k} m={m} chunks={count}")
        if len(view) != off + count * _ENTRY.size:
            raise RecordError(
                f"manifest: {len(view) - off} entry bytes for {count} chunks of {_ENTRY.size}")
        chunks = tuple(ChunkRef(*_ENTRY.unpack_from(view, off + i * _ENTRY.size))
                       for i in range(count))
        return cls(codec, k, m, chunks)


def make_manifest(codec: str, k: int, m: int, chunks: Sequence[ChunkRef]) -> Manifest:
    """A :class:`Manifest` from a sequence of chunk refs."""
    return Manifest(codec, k, m, tuple(chunks))

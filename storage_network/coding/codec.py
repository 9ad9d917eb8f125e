"""From a chunk to its stripe of shards and back.

Encode: chunk -> one zstd frame -> (in a private cache: the frame sealed
under the chunk's key, :mod:`storage_network.coding.sealing`) -> pyeclib
``k + m`` fragments -> stripe tree (:mod:`storage_network.wire.stripe`) ->
``k + m`` shard bodies.  Decode: any ``k`` verified fragments -> the stored
bytes (:meth:`StripeCodec.decode`, what repair re-encodes) -> the zstd frame
(:func:`open_frame`).  The code is systematic: with the ``k`` data fragments
no arithmetic is needed.

pyeclib objects are not shared between threads (one driver and one zstd
compressor per thread), and fragments are always handed to pyeclib as
``bytes``: it aborts the process on other buffer types.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import zstandard
from pyeclib.ec_iface import ECDriver, ECDriverError

from storage_network.coding.sealing import CacheSecret, seal, unseal
from storage_network.errors import ChunkUnavailableError, SealError
from storage_network.wire.manifest import ChunkRef, Manifest
from storage_network.wire.stripe import Buffer, build_stripe


@dataclass(frozen=True)
class EncodedChunk:
    """A chunk ready to store: its manifest entry and its ``n`` shard bodies."""

    ref: ChunkRef
    bodies: tuple[bytes, ...]

    @property
    def stored_bytes(self) -> int:
        """Bytes of all shard bodies together."""
        return sum(len(b) for b in self.bodies)


class StripeCodec:
    """Compress + erasure-code chunks with fixed ``k``, ``m``, pyeclib backend and zstd level.

    Thread-safe: every thread gets its own pyeclib driver and zstd compressor.
    """

    def __init__(self, k: int, m: int, codec: str = "isa_l_rs_cauchy", zstd_level: int = 3):
        self.k, self.m, self.codec, self.zstd_level = k, m, codec, zstd_level
        self._local = threading.local()
        self._driver()  # fail early on bad parameters

    def _driver(self) -> ECDriver:
        drv = getattr(self._local, "driver", None)
        if drv is None:
            drv = self._local.driver = ECDriver(k=self.k, m=self.m, ec_type=self.codec)
        return drv

    def _compressor(self) -> zstandard.ZstdCompressor:
        comp = getattr(self._local, "zstd", None)
        if comp is None:
            comp = self._local.zstd = zstandard.ZstdCompressor(
                level=self.zstd_level, write_content_size=True, write_checksum=False)
        return comp

    def encode(self, chunk: Buffer, secret: CacheSecret | None = None) -> EncodedChunk:
        """Compress ``chunk`` into one zstd frame and code it into ``k + m`` shard bodies.

        With ``secret`` (a private cache) the chunk id is keyed and the frame
        is sealed under the chunk's key before it is coded; the ref carries
        that key.  Deterministic either way: the same chunk always gives
        the same id and shards (dedup).
        """
        ref, proofs, fragments = self.encode_parts(chunk, secret)
        return EncodedChunk(ref, tuple(p + f for p, f in zip(proofs, fragments, strict=True)))

    def encode_parts(self, chunk: Buffer, secret: CacheSecret | None = None
                     ) -> tuple[ChunkRef, list[bytes], list[bytes]]:
        """What :meth:`encode` makes, before each shard body is joined.

        Returns:
            ``(ref, proofs, fragments)``: shard body i is ``proofs[i] + fragments[i]``
            (``n`` of each), so a caller can write the bodies where it wants
            them without joining them first.
        """
        plain_hash = hashlib.sha256(chunk).digest()
        frame = self._compressor().compress(chunk)
        if secret is None:
            root, proofs, fragments = self._stripe(frame)
            return ChunkRef(plain_hash, root, len(chunk), len(frame)), proofs, fragments
        derived = secret.chunk(plain_hash)
        stored = seal(derived.key, frame, derived.chunk_id)
        root, proofs, fragments = self._stripe(stored)
        return (ChunkRef(derived.chunk_id, root, len(chunk), len(stored), derived.key),
                proofs, fragments)

    def encode_frame(self, frame: bytes) -> tuple[bytes, tuple[bytes, ...]]:
        """Erasure-code an already compressed zstd frame.

        Returns:
            ``(stripe root, n shard bodies)``.  The code is deterministic, so
            repair re-encodes a decoded frame and gets the stripe it lost.
        """
        root, proofs, fragments = self._stripe(frame)
        return root, tuple(p + f for p, f in zip(proofs, fragments, strict=True))

    def reencode(self, frame: bytes, root: bytes) -> tuple[bytes, tuple[bytes, ...]]:
        """Erasure-code a decoded frame again into the stripe named ``root``: shard
        bodies in the format that stripe was written in (format 2, else format 1,
        :mod:`storage_network.wire.stripe`), so repair restores what was lost.

        Returns:
            ``(stripe root, n shard bodies)``; the root differs from ``root`` when
            neither format gives it back (the caller refuses to write them).
        """
        fragments = self._driver().encode(frame)
        got, proofs = build_stripe(fragments, fast=True)
        if got != root:
            got, proofs = build_stripe(fragments, fast=False)
        return got, tuple(p + f for p, f in zip(proofs, fragments, strict=True))

    def _stripe(self, stored: bytes) -> tuple[bytes, list[bytes], list[bytes]]:
        """``(stripe root, n proofs, n pyeclib fragments)`` of the stored bytes, in
        shard body format 2."""
        fragments = self._driver().encode(stored)
        root, proofs = build_stripe(fragments)
        return root, proofs, fragments

    def decode(self, ref: ChunkRef, fragments: Mapping[int, Buffer]) -> bytes:
        """Rebuild the stored bytes of ``ref`` (its zstd frame, sealed in a private
        cache: see :func:`open_frame`) from verified fragments by index.

        Data fragments (index < k) are preferred; parity is used only for
        missing ones.  With all k data fragments no arithmetic is needed: their
        payloads are joined (:func:`join_data_fragments`, one copy).

        Raises:
            ChunkUnavailableError: fewer than ``k`` fragments, or pyeclib refused them.
        """
        if len(fragments) < self.k:
            raise ChunkUnavailableError(
                f"chunk {ref.chunk_id.hex()[:16]}: {len(fragments)} of {self.k} needed fragments")
        frame = join_data_fragments(self.k, fragments, ref.stored_size)
        if frame is None:
            chosen = [bytes(fragments[i]) for i in sorted(fragments)[: self.k]]
            try:
                frame = self._driver().decode(chosen)
            except ECDriverError as exc:
                raise ChunkUnavailableError(
                    f"chunk {ref.chunk_id.hex()[:16]}: erasure decode failed: {exc}") from exc
        if len(frame) != ref.stored_size:
            raise ChunkUnavailableError(
                f"chunk {ref.chunk_id.hex()[:16]}: decoded {len(frame)} bytes, "
                f"manifest says {ref.stored_size}")
        return bytes(frame)


def open_frame(manifest: Manifest, ref: ChunkRef, stored: bytes) -> bytes:
    """The zstd frame of chunk ``ref`` of ``manifest`` from its decoded stored bytes.

    A public manifest's stored bytes are the frame.  A sealed manifest's are
    opened with ``ref.key`` (put back from the record's sealed metadata).

    Raises:
        SealError: the manifest is sealed and ``ref`` has no key, or the bytes
            do not open under it (they were verified against the signed stripe
            root, so the record itself is wrong, not a node).
    """
    if not manifest.sealed:
        return stored
    if not ref.key:
        raise SealError(f"chunk {ref.chunk_id.hex()[:16]} is sealed and its key is unknown")
    try:
        return unseal(ref.key, stored, ref.chunk_id)
    except SealError as exc:
        raise SealError(f"chunk {ref.chunk_id.hex()[:16]}: {exc}") from exc


FRAGMENT_HEADER_BYTES = 80
"""Size of liberasurecode's ``fragment_header_t`` (liberasurecode
``include/erasurecode/erasurecode.h``): packed little-endian ``fragment_metadata_t``
(u32 index @0, u32 payload size @4, u32 backend metadata size @8, u64 original
data size @12, ...), then u32 magic @59, libec version, metadata checksum, padding."""
FRAGMENT_MAGIC = 0x0B0C5ECC
_HEADER = struct.Struct("<IIIQ")
_MAGIC = struct.Struct("<I")


def join_data_fragments(k: int, fragments: Mapping[int, Buffer], size: int) -> bytes | None:
    """The ``size`` original bytes from data fragments ``0 .. k-1`` of a systematic
    code (every codec of :data:`storage_network.config.CODECS`), by joining their
    payloads: one copy, no pyeclib call.

    The fragments must already be verified against their stripe root (so their
    headers are the publisher's).  Returns None when a data fragment is missing
    or a header does not read as expected (wrong magic or index, backend
    metadata, payloads shorter than ``size``): the caller then decodes with
    pyeclib, which reports what is wrong.
    """
    parts: list[memoryview] = []
    have = 0
    for index in range(k):
        fragment = fragments.get(index)
        if fragment is None or len(fragment) < FRAGMENT_HEADER_BYTES:
            return None
        view = memoryview(fragment)
        number, payload, backend, original = _HEADER.unpack_from(view, 0)
        (magic,) = _MAGIC.unpack_from(view, 59)
        end = FRAGMENT_HEADER_BYTES + payload
        if magic != FRAGMENT_MAGIC or number != index or backend or original != size \
                or end > len(view):
            return None
        take = min(payload, size - have)
        parts.append(view[FRAGMENT_HEADER_BYTES:FRAGMENT_HEADER_BYTES + take])
        have += take
    if have != size:
        return None
    return b"".join(parts)

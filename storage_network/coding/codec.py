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
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import zstandard
from pyeclib.ec_iface import ECDriver, ECDriverError

from storage_network.coding.sealing import CacheSecret, seal, unseal
from storage_network.errors import ChunkUnavailableError, SealError
from storage_network.wire.manifest import ChunkRef, Manifest
from storage_network.wire.stripe import build_stripe


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

    def encode(self, chunk: bytes, secret: CacheSecret | None = None) -> EncodedChunk:
        """Compress ``chunk`` into one zstd frame and code it into ``k + m`` shard bodies.

        With ``secret`` (a private cache) the chunk id is keyed and the frame
        is sealed under the chunk's key before it is coded; the ref carries
        that key.  Deterministic either way: the same chunk always gives
        the same id and shards (dedup).
        """
        plain_hash = hashlib.sha256(chunk).digest()
        frame = self._compressor().compress(chunk)
        if secret is None:
            root, bodies = self.encode_frame(frame)
            return EncodedChunk(ChunkRef(plain_hash, root, len(chunk), len(frame)), bodies)
        derived = secret.chunk(plain_hash)
        stored = seal(derived.key, frame, derived.chunk_id)
        root, bodies = self.encode_frame(stored)
        return EncodedChunk(ChunkRef(derived.chunk_id, root, len(chunk), len(stored),
                                     derived.key), bodies)

    def encode_frame(self, frame: bytes) -> tuple[bytes, tuple[bytes, ...]]:
        """Erasure-code an already compressed zstd frame.

        Returns:
            ``(stripe root, n shard bodies)``.  The code is deterministic, so
            repair re-encodes a decoded frame and gets the stripe it lost.
        """
        fragments = self._driver().encode(frame)
        root, proofs = build_stripe(fragments)
        return root, tuple(p + f for p, f in zip(proofs, fragments, strict=True))

    def decode(self, ref: ChunkRef, fragments: Mapping[int, bytes]) -> bytes:
        """Rebuild the stored bytes of ``ref`` (its zstd frame, sealed in a private
        cache: see :func:`open_frame`) from verified fragments by index.

        Data fragments (index < k) are preferred; parity is used only for
        missing ones.

        Raises:
            ChunkUnavailableError: fewer than ``k`` fragments, or pyeclib refused them.
        """
        if len(fragments) < self.k:
            raise ChunkUnavailableError(
                f"chunk {ref.chunk_id.hex()[:16]}: {len(fragments)} of {self.k} needed fragments")
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

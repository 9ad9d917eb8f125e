"""Bodies of back-to-back zstd frames (a ``.nar.zst`` as the gateway sends it)."""

from __future__ import annotations

import zstandard


def unzstd(body: bytes) -> bytes:
    """Every frame of ``body`` decompressed, back to back."""
    return zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(body)

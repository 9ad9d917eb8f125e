"""The uncompressed payload of a record (a NAR, a build log) as an async stream of pieces.

Every chunk's frame comes from :func:`storage_network.read.stream.stream_payload`
(shards verified against the signed manifest) and is decompressed on the
network client's thread pool, one frame at a time: memory is bounded by
the prefetch window, never by the payload size.  A frame decompresses to
exactly its chunk's size in the manifest, never more: a frame header that
announces more, or data that goes on past it, is refused before the output
grows (so the payload is bounded by the manifest's size, the NarSize the
record lookup checked).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import zstandard

from storage_network import FetchPlan, NetworkClient, stream_payload
from storage_network.wire.manifest import ChunkRef

from .errors import BadRecordError


def decompress_frame(number: int, ref: ChunkRef, frame: bytes) -> bytes:
    """The plaintext of chunk ``number`` from its zstd ``frame``: exactly ``ref.size`` bytes.

    Raises:
        BadRecordError: the frame announces or holds another size, or does not
            decompress (a publisher bug: the frame itself was verified).
    """
    try:
        announced = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as exc:
        raise BadRecordError(f"chunk {number}: its frame header is malformed: {exc}") from exc
    if announced > ref.size:  # -1: not announced; then max_output_size bounds it
        raise BadRecordError(f"chunk {number}: its frame announces {announced} bytes, the "
                             f"manifest says {ref.size}")
    try:
        plain = zstandard.ZstdDecompressor().decompress(frame, max_output_size=ref.size)
    except zstandard.ZstdError as exc:
        raise BadRecordError(f"chunk {number}: its frame does not decompress to {ref.size} "
                             f"bytes: {exc}") from exc
    if len(plain) != ref.size:
        raise BadRecordError(f"chunk {number}: its frame holds {len(plain)} bytes, the "
                             f"manifest says {ref.size}")
    return plain


async def payload_pieces(net: NetworkClient, plan: FetchPlan,
                         prefetch: int) -> AsyncIterator[bytes]:
    """The payload bytes of ``plan``'s manifest, one decompressed chunk at a time.

    Raises:
        ChunkUnavailableError: a chunk could not be rebuilt.
        BadRecordError: a verified frame is not its chunk (see :func:`decompress_frame`).
    """
    loop = asyncio.get_running_loop()
    refs = plan.manifest.chunks
    number = 0
    async for frame in stream_payload(net, plan, prefetch):
        yield await loop.run_in_executor(net.pool, decompress_frame, number, refs[number], frame)
        number += 1

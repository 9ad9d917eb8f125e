"""The uncompressed payload of a record (a NAR, a build log) as an async stream of pieces.

Every chunk's frame comes from :func:`storage_network.fetch.stream_payload`
(shards verified against the signed manifest) and is decompressed on the
network client's thread pool, one frame at a time: memory is bounded by
the prefetch window, never by the payload size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import zstandard

from storage_network.fetch import FetchPlan, stream_payload
from storage_network.network_client import NetworkClient


def _decompress_frame(frame: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(frame)


async def payload_pieces(net: NetworkClient, plan: FetchPlan,
                         prefetch: int) -> AsyncIterator[bytes]:
    """The payload bytes of ``plan``'s manifest, one decompressed chunk at a time.

    Raises:
        ChunkUnavailableError: a chunk could not be rebuilt.
        zstandard.ZstdError: a verified frame does not decompress (a publisher bug).
    """
    loop = asyncio.get_running_loop()
    async for frame in stream_payload(net, plan, prefetch):
        yield await loop.run_in_executor(net.pool, _decompress_frame, frame)

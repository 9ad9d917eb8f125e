"""Reading a payload back from a network, checking every frame on the way."""

from __future__ import annotations

import zstandard

from storage_network.client import NetworkClient
from storage_network.read.plan import FetchPlan, plan_fetch
from storage_network.read.stream import DEFAULT_PREFETCH, stream_payload
from storage_network.wire.manifest import Manifest
from tests.support.zstd import unzstd


async def read_back(net: NetworkClient, manifest: Manifest,
                    prefetch: int = DEFAULT_PREFETCH) -> bytes:
    """The payload of ``manifest``: :func:`read_plan` of a fresh plan."""
    return await read_plan(net, await plan_fetch(net, manifest), prefetch)


async def read_plan(net: NetworkClient, plan: FetchPlan,
                    prefetch: int = DEFAULT_PREFETCH) -> bytes:
    """stream_payload of ``plan``, decompressed.

    (A helper module: pytest does not rewrite its asserts, so they carry messages.)

    Checks every frame: its stored size, and that it decompresses alone to its chunk.
    """
    frames = [frame async for frame in stream_payload(net, plan, prefetch=prefetch)]
    chunks = plan.manifest.chunks
    sizes, expected = [len(f) for f in frames], [plan.manifest.frame_size(c) for c in chunks]
    assert sizes == expected, f"frame sizes {sizes} != {expected}"
    dctx = zstandard.ZstdDecompressor()
    for i, (frame, ref) in enumerate(zip(frames, chunks, strict=True)):
        size = len(dctx.decompress(frame))
        assert size == ref.size, f"frame {i} decompresses to {size} bytes, not {ref.size}"
    return unzstd(b"".join(frames))

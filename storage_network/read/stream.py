"""Payload streaming: every chunk's zstd frame in order, fetched ahead in windows.

:func:`stream_payload` yields the chunks' zstd frames in order, fetching
``prefetch`` chunks ahead in windows (:func:`~storage_network.read.batch_fetch.fetch_chunks`),
so that a chunk that cannot be rebuilt is usually known before its bytes are
due.  A transfer fails (and its caller must abort the response) only when
some chunk has fewer than k reachable shards at that moment.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from storage_network.client import NetworkClient, cancel_and_wait
from storage_network.read.batch_fetch import fetch_chunks
from storage_network.read.plan import FetchPlan

DEFAULT_PREFETCH = 256
WINDOW_CHUNKS = 16
RAMP_WINDOWS = 2
"""Windows in flight at the start; one more per window done, up to ``prefetch``: the
first picks are made before any node's rate is known (see
:mod:`storage_network.read.flow`), so few chunks are placed blind."""


async def stream_payload(net: NetworkClient, plan: FetchPlan,
                         prefetch: int = DEFAULT_PREFETCH) -> AsyncIterator[bytes]:
    """Yield the zstd frame of every chunk in order, ``prefetch`` chunks ahead.

    Chunks are fetched in windows of up to :data:`WINDOW_CHUNKS` (one batch
    request per node per window, :func:`fetch_chunks`); up to ``prefetch // window``
    windows (at least one; :data:`RAMP_WINDOWS` at first, one more per window
    done) are in flight while frames are yielded.  Each node serves them in
    order through its read lanes (:meth:`NetworkClient.lane`).

    Raises:
        ChunkUnavailableError: a chunk could not be rebuilt (the caller must
            then abort its response, never end it cleanly).
    """
    manifest = plan.manifest
    total = len(manifest.chunks)
    window = max(1, min(WINDOW_CHUNKS, prefetch))
    most = max(1, prefetch // window)
    ahead = min(most, RAMP_WINDOWS)
    tasks: deque[asyncio.Task[list[bytes]]] = deque()
    starts = iter(range(0, total, window))
    try:
        while True:
            while len(tasks) < ahead:
                start = next(starts, None)
                if start is None:
                    break
                numbers = range(start, min(total, start + window))
                tasks.append(asyncio.create_task(
                    fetch_chunks(net, manifest, numbers, plan.holders)))
            if not tasks:
                return
            frames = await tasks.popleft()
            ahead = min(most, ahead + 1)
            for frame in frames:
                yield frame
    finally:
        await cancel_and_wait(set(tasks))

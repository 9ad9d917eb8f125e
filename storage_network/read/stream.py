"""Payload streaming: every chunk's zstd frame in order, fetched ahead in windows.

:func:`stream_payload` yields the chunks' zstd frames in order, fetching
``prefetch`` chunks ahead in windows (:func:`~storage_network.read.batch_fetch.fetch_chunks`),
so that a chunk that cannot be rebuilt is usually known before its bytes are
due.  A transfer fails (and its caller must abort the response) only when
some chunk has fewer than k reachable shards at that moment.

:func:`plan_stream` is :func:`~storage_network.read.plan.plan_fetch` for a
stream of the whole payload: while the ``has`` round runs (a round trip to
every node), the first windows are already asked of the chunks' homes (the
first n nodes of each ranking, where a push put the shards), so distant
nodes start sending a round trip earlier.  A home that does not hold its
shard answers so in the batch, and that chunk goes on as any fetch does
(other homes, then every node asked again).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator

from storage_network.client import NetworkClient, cancel_and_wait
from storage_network.nodes.placement import chunk_ranking
from storage_network.read.batch_fetch import fetch_chunks
from storage_network.read.locate import ShardHolders
from storage_network.read.plan import FetchPlan, plan_fetch
from storage_network.wire.manifest import Manifest

DEFAULT_PREFETCH = 256
WINDOW_CHUNKS = 16
RAMP_WINDOWS = 2
"""Windows in flight at the start; one more per window done, up to ``prefetch``: the
first picks are made before any node's rate is known (see
:mod:`storage_network.read.flow`), so few chunks are placed blind."""


def _windows(total: int, prefetch: int) -> tuple[int, Iterator[range]]:
    """The windows in flight at most, and the chunk numbers of each window in order."""
    window = max(1, min(WINDOW_CHUNKS, prefetch))
    starts = range(0, total, window)
    return max(1, prefetch // window), (range(s, min(total, s + window)) for s in starts)


def home_holders(net: NetworkClient, manifest: Manifest, number: int) -> ShardHolders:
    """Chunk ``number``'s shard i presumed at the i-th node of its ranking (its home)."""
    ref = manifest.chunks[number]
    have = ShardHolders(chunk_ranking(net.network, ref.chunk_id))
    for index, node in enumerate(have.rank[:manifest.n]):
        have.add(index, node)
    return have


async def plan_stream(net: NetworkClient, manifest: Manifest,
                      prefetch: int = DEFAULT_PREFETCH) -> FetchPlan:
    """:func:`~storage_network.read.plan.plan_fetch`, with the first
    :data:`RAMP_WINDOWS` windows of :func:`stream_payload` asked of the chunks'
    homes meanwhile (:attr:`FetchPlan.early`; see the module docstring).

    Raises:
        ChunkUnavailableError: as :func:`plan_fetch` (the early fetches are then
            cancelled).
    """
    most, windows = _windows(len(manifest.chunks), prefetch)
    early: list[asyncio.Task[list[bytes]]] = []
    for numbers in windows:
        if len(early) == min(most, RAMP_WINDOWS):
            break
        holders = {i: home_holders(net, manifest, i) for i in numbers}
        task = asyncio.create_task(fetch_chunks(net, manifest, numbers, holders))
        # a plan dropped unstreamed must not log "exception never retrieved"
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        early.append(task)
    try:
        plan = await plan_fetch(net, manifest)
    except BaseException:
        await cancel_and_wait(set(early))
        raise
    return FetchPlan(plan.manifest, plan.holders, tuple(early))


class _Frames:
    """The frames of :func:`_stream` as an async iterator whose ``aclose`` also cancels
    the plan's early fetches: closing an async generator that never started does not
    run its ``finally`` (a fill that lost its claim closes the frames unread)."""

    def __init__(self, frames: AsyncGenerator[bytes, None], plan: FetchPlan) -> None:
        self._frames = frames
        self._plan = plan

    def __aiter__(self) -> _Frames:
        return self

    async def __anext__(self) -> bytes:
        return await self._frames.__anext__()

    async def aclose(self) -> None:
        """Stop the stream: its fetches (the plan's early ones included) are cancelled."""
        self._plan.drop_early()
        await self._frames.aclose()


def stream_payload(net: NetworkClient, plan: FetchPlan,
                   prefetch: int = DEFAULT_PREFETCH) -> AsyncIterator[bytes]:
    """Yield the zstd frame of every chunk in order, ``prefetch`` chunks ahead.

    Chunks are fetched in windows of up to :data:`WINDOW_CHUNKS` (one batch
    request per node per window, :func:`fetch_chunks`); up to ``prefetch // window``
    windows (at least one; :data:`RAMP_WINDOWS` at first, one more per window
    done) are in flight while frames are yielded.  Each node serves them in
    order through its read lanes (:meth:`NetworkClient.lane`).

    The iterator's ``aclose`` cancels every fetch still running, the plan's early
    ones included, whether or not a frame was taken.

    Raises:
        ChunkUnavailableError: a chunk could not be rebuilt (the caller must
            then abort its response, never end it cleanly).
    """
    return _Frames(_stream(net, plan, prefetch), plan)


async def _stream(net: NetworkClient, plan: FetchPlan,
                  prefetch: int) -> AsyncGenerator[bytes, None]:
    manifest = plan.manifest
    most, windows = _windows(len(manifest.chunks), prefetch)
    ahead = min(most, RAMP_WINDOWS)
    tasks: deque[asyncio.Task[list[bytes]]] = deque(plan.early)
    for _ in plan.early:
        next(windows, None)
    try:
        while True:
            while len(tasks) < ahead:
                numbers = next(windows, None)
                if numbers is None:
                    break
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

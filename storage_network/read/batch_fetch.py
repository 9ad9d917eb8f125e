"""The fetch of a window of chunks, their first shards asked with one batch request per node.

:func:`fetch_chunks` asks for each chunk's first k shards with one batch
request per node (:mod:`storage_network.wire.shard_batch`); each chunk then
goes on as :func:`~storage_network.read.chunk_fetch.fetch_chunk` does.  A
batch slower than ``hedge_after`` marks its node slow but is not cancelled
while some chunk still waits for it; the chunks it holds up hedge with
single requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from storage_network import metrics
from storage_network.client import NetworkClient, cancel_and_wait
from storage_network.coding.codec import StripeCodec
from storage_network.config import NodeInfo
from storage_network.errors import NodeError
from storage_network.nodes.health import blamed_on_client
from storage_network.read.chunk_fetch import HedgedFetch, shard_holders, timed_decode
from storage_network.read.shard_fetch import (
    Again,
    Candidate,
    Fragment,
    Outcome,
    accept_shard,
    request_failed,
    verify_all,
)
from storage_network.wire.manifest import ChunkRef, Manifest
from storage_network.wire.stripe import max_shard_bytes, shard_id

log = logging.getLogger("nixshard.network")

LANE_PATIENCE = 4
"""A batch waiting for a lane longer than this many ``hedge_after`` is late."""


class _Batch:
    """One batch request to ``node`` for one shard of each of several chunk fetches.

    Each fetch gets a future for its share (in its ``running``); the batch
    resolves every share when its answer is in (a verified fragment, or None
    with the failure reported, see :func:`accept_shard`).  A share a fetch no
    longer needs is cancelled by it; once every share is, the request is
    cancelled.

    The request waits for one of the node's read lanes first
    (:meth:`NetworkClient.lane`: a few at once per node, first come first
    served), so the windows of a transfer reach a node's link in order and an
    answer is not slowed by the answers queued after it.  :attr:`late` is set
    when the batch was sent and not answered within ``hedge_after`` seconds
    (its node is then marked slow, unless the client was busy meanwhile), or
    when it waited for a lane longer than :data:`LANE_PATIENCE` x
    ``hedge_after`` (the node is busy with earlier requests that may hang:
    the chunks hedge, the node is not blamed).
    """

    def __init__(self, net: NetworkClient, node: NodeInfo,
                 wanted: list[tuple[HedgedFetch, Candidate]]) -> None:
        loop = asyncio.get_running_loop()
        self.net, self.node, self.wanted = net, node, wanted
        self.started = loop.time()
        self.shares: list[asyncio.Future[Outcome]] = [loop.create_future() for _ in wanted]
        self.settled = 0  # shares done (resolved, or withdrawn by their fetch)
        self.late: asyncio.Future[None] = loop.create_future()
        for (fetch, cand), share in zip(wanted, self.shares, strict=True):
            fetch.running[share] = (cand, self.started)
            fetch.shares.add(share)
            share.add_done_callback(self._withdrawn)
        self.task = asyncio.create_task(self._run())
        self._timer = loop.call_later(LANE_PATIENCE * net.hedge_after, self._set_late)
        self.task.add_done_callback(lambda _: self._timer.cancel())

    def _withdrawn(self, _: asyncio.Future[Outcome]) -> None:
        self.settled += 1
        if self.settled == len(self.shares) and not self.task.done():
            self.task.cancel()

    def _set_late(self) -> None:
        if not self.late.done():
            self.late.set_result(None)

    def _sent(self) -> None:
        """The request leaves its lane: from now on ``hedge_after`` counts."""
        self.sent = asyncio.get_running_loop().time()
        self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.net.hedge_after,
                                                            self._check_late)

    def _check_late(self) -> None:
        if self.task.done():
            return
        self._set_late()
        if self.net.was_busy(self.sent, self.net.hedge_after) \
                or self.net.nodes[self.node.id].queued:  # queued behind the client's own slots
            return
        self.net.health.slow(self.node.id, f"batch of {len(self.wanted)} shards not answered "
                             f"within {self.net.hedge_after:g} s")

    def _resolve(self, share: asyncio.Future[Outcome], outcome: Outcome) -> None:
        if not share.done():
            share.set_result(outcome)

    async def _run(self) -> None:
        try:
            async with self.net.lane(self.node.id):
                self._sent()
                await self._ask()
        except Exception:  # a bug, not a node's doing: shown, and the chunks go on
            log.exception("batch of %d shards from node %s", len(self.wanted), self.node.id)
        finally:  # whatever happened, no share is left waiting
            for share in self.shares:
                self._resolve(share, None)

    async def _ask(self) -> None:
        net, node, wanted = self.net, self.node, self.wanted
        ids = [shard_id(fetch.ref.root, cand.index) for fetch, cand in wanted]
        asked = sum(-(-fetch.ref.stored_size // fetch.k) for fetch, _ in wanted)
        started = time.perf_counter()
        try:
            limits = [max_shard_bytes(fetch.ref.stored_size, fetch.k) for fetch, _ in wanted]
            bodies = await net.nodes[node.id].get_shards(ids, limits)
        except BaseException as exc:
            net.flow.answered(node.id, asked, 0, 0.0)
            if not isinstance(exc, NodeError):
                raise
            metrics.observe_shard(node.id, time.perf_counter() - started, 0, len(ids))
            request_failed(net, node, exc, f"batch of {len(ids)} shards", wanted[0][0].problems)
            outcome = Again.AGAIN if blamed_on_client(exc) else None
            for (fetch, _), share in zip(wanted, self.shares, strict=True):
                if fetch is not wanted[0][0]:
                    fetch.problems.append(str(exc))
                self._resolve(share, outcome)
            return
        answered = [(fetch.ref.root, cand.index, body)
                    for (fetch, cand), body in zip(wanted, bodies, strict=True)
                    if body is not None]
        got = sum(len(body) for _, _, body in answered)
        net.flow.answered(node.id, asked, got, time.perf_counter() - started)
        metrics.observe_shard(node.id, time.perf_counter() - started, got, len(ids))
        checked = iter(await net.compute(got, verify_all, answered))
        for (fetch, cand), body, share in zip(wanted, bodies, self.shares, strict=True):
            fragment = accept_shard(net, fetch.ref, cand, body,
                               None if body is None else next(checked), fetch.problems)
            self._resolve(share, fragment)


async def fetch_chunks(net: NetworkClient, manifest: Manifest, numbers: Sequence[int],
                       holders: Sequence[Mapping[int, Sequence[NodeInfo]]]
                       | Mapping[int, Mapping[int, Sequence[NodeInfo]]]) -> list[bytes]:
    """Fetch, verify and decode the chunks ``numbers`` of ``manifest`` together.

    Every chunk's k preferred shards are asked for in one batch request per
    node (:meth:`NodeClient.get_shards`, see :class:`_Batch`); each chunk
    then goes on as :func:`~storage_network.read.chunk_fetch.fetch_chunk` does
    (hedged single requests for what the batches do not give in time,
    candidates never dropped).  The frames
    are decoded in one hop to the client's pool.

    Args:
        holders: per chunk number of the manifest (a sequence, or a mapping
            holding at least ``numbers``), as in
            :class:`~storage_network.read.plan.FetchPlan`.

    Returns:
        The zstd frames, in the order of ``numbers``.

    Raises:
        ChunkUnavailableError: some chunk could not be rebuilt.
    """
    fetches = [HedgedFetch(net, manifest, manifest.chunks[i],
                            shard_holders(net, manifest.chunks[i], holders[i]))
               for i in numbers]
    by_node: dict[str, list[tuple[HedgedFetch, Candidate]]] = defaultdict(list)
    nodes: dict[str, NodeInfo] = {}
    for fetch in fetches:
        for cand in fetch.first_picks(net.flow):
            by_node[cand.node.id].append((fetch, cand))
            nodes[cand.node.id] = cand.node
    batches = [_Batch(net, nodes[node_id], wanted) for node_id, wanted in by_node.items()]
    runs: dict[int, asyncio.Task[dict[int, Fragment]]] = {}
    try:
        await _await_batches(fetches, batches, runs)
        fragments = [fetch.fragments if number not in runs else await runs[number]
                     for number, fetch in enumerate(fetches)]
    finally:
        await cancel_and_wait(set(runs.values()))
        await cancel_and_wait({batch.task for batch in batches})
    codec = net.codec(manifest.codec, manifest.k, manifest.m)
    items = [(f.ref, got) for f, got in zip(fetches, fragments, strict=True)]
    frames = await net.compute(sum(f.ref.stored_size for f in fetches), _decode_all, codec,
                               manifest, items)
    for got in fragments:
        metrics.chunk_fetched(got.keys(), manifest.k)
    return frames


async def _await_batches(fetches: Sequence[HedgedFetch], batches: Sequence[_Batch],
                         runs: dict[int, asyncio.Task[dict[int, Fragment]]]) -> None:
    """Wait for the batches of a window, and start :meth:`HedgedFetch.run` only
    for the fetches that need more than their batch shares.

    The common case, every batch answering in time with verified shards, then
    costs one wake-up per batch instead of several per chunk.  A fetch goes on
    with its own run (hedging at once) as soon as one of its shares failed,
    when it has fewer than k shares asked, or when one of its batches is
    :attr:`_Batch.late`.  Fills ``runs``: fetch position -> its run task.
    """
    loop = asyncio.get_running_loop()
    position = {id(fetch): number for number, fetch in enumerate(fetches)}

    def go_on(number: int) -> None:
        waiting.discard(number)
        runs[number] = asyncio.create_task(fetches[number].run(loop.time()))

    waiting = set(range(len(fetches)))
    for number, fetch in enumerate(fetches):
        if len(fetch.running) < fetch.k:
            go_on(number)
    pending: set[asyncio.Future[Any]] = {batch.task for batch in batches}
    pending |= {batch.late for batch in batches}
    late_of = {batch.late: batch for batch in batches}
    while waiting and any(batch.task in pending for batch in batches):
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for future in done:
            batch = late_of.get(future)
            if batch is None or batch.task.done():
                continue
            for fetch, _ in batch.wanted:
                if position[id(fetch)] in waiting:
                    go_on(position[id(fetch)])
        for number in list(waiting):
            fetch = fetches[number]
            if not fetch.take_done():
                go_on(number)
            elif len(fetch.fragments) >= fetch.k:
                waiting.discard(number)
    for number in list(waiting):
        go_on(number)


def _decode_all(codec: StripeCodec, manifest: Manifest,
                items: Sequence[tuple[ChunkRef, Mapping[int, Fragment]]]) -> list[bytes]:
    """:func:`timed_decode` of each ``(ref, fragments)`` in one hop to the pool."""
    return [timed_decode(codec, manifest, ref, fragments) for ref, fragments in items]

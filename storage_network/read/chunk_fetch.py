"""The hedged, verified fetch of one chunk: k distinct shards from the best candidates.

A reader never runs out of candidates while k verified shards of a chunk exist.
:func:`fetch_chunk` asks k nodes for k distinct shards, data shards on
nodes in good standing first (see :mod:`storage_network.nodes.health`).
Every body is checked against the stripe root
(:mod:`storage_network.read.shard_fetch`).  A body that fails its
proof, a 404 for a claimed shard, a malformed answer, a connection error
or a timeout counts against the node (``NodeHealth.node_error``: a
timeout blamed on the client does not) and another candidate is asked at
once; when the k are not all verified within ``hedge_after`` seconds, one
more candidate is asked per such period (another index, or another holder
of the same index).  Every holder stays a candidate for the whole
transfer, the ones whose ``has`` answer came late included.  When a
chunk's candidates are exhausted with fewer than k verified, it waits for
the late ``has`` answers and asks every node of the network about the
chunk again (:func:`~storage_network.read.locate.relocate_chunk`), and goes on
with what is new; only when nothing is left does it fail.  The first k
verified fragments win; the other requests are cancelled, and the nodes
of those that ran ``hedge_after`` seconds or more are recorded as slow
(unless the client itself was busy meanwhile:
:meth:`~storage_network.client.NetworkClient.was_busy`).

:class:`HedgedFetch` is also what each chunk of a batched window runs
(:mod:`storage_network.read.batch_fetch`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from storage_network import metrics
from storage_network.client import NetworkClient, cancel_and_wait
from storage_network.coding.codec import StripeCodec, open_frame
from storage_network.config import NodeInfo
from storage_network.errors import ChunkUnavailableError
from storage_network.nodes.health import CLIENT_RETRIES
from storage_network.nodes.placement import chunk_ranking
from storage_network.read.flow import NodeFlow
from storage_network.read.locate import ShardHolders, relocate_chunk
from storage_network.read.shard_fetch import (
    Again,
    Candidate,
    Fragment,
    Outcome,
    fetch_shard,
    preference,
)
from storage_network.wire.manifest import ChunkRef, Manifest
from storage_network.wire.stripe import shard_id


def shard_holders(net: NetworkClient, ref: ChunkRef,
                  holders: Mapping[int, Sequence[NodeInfo]]) -> ShardHolders:
    """``holders`` as :class:`ShardHolders` (itself when it is one, else a copy)."""
    if isinstance(holders, ShardHolders):
        return holders
    have = ShardHolders(chunk_ranking(net.network, ref.chunk_id))
    for index, nodes in holders.items():
        for node in nodes:
            have.add(index, node)
    return have


class HedgedFetch:
    """The requests of one chunk fetch (see :func:`fetch_chunk`).

    ``running`` maps each request in flight (a single request's task, or
    this chunk's share of a batch, see
    :class:`~storage_network.read.batch_fetch._Batch`) to its candidate and
    the loop time it started.
    """

    def __init__(self, net: NetworkClient, manifest: Manifest, ref: ChunkRef,
                 holders: ShardHolders) -> None:
        self.net, self.ref, self.k, self.n = net, ref, manifest.k, manifest.n
        self.holders = holders
        self.tried: set[tuple[int, str]] = set()
        self.retries: Counter[tuple[int, str]] = Counter()
        self.running: dict[asyncio.Future[Outcome], tuple[Candidate, float]] = {}
        self.shares: set[asyncio.Future[Outcome]] = set()
        self.fragments: dict[int, Fragment] = {}
        self.problems: list[str] = []
        self.search: asyncio.Task[object] | None = None
        self.relocated = False

    def _untried(self) -> list[Candidate]:
        """Every (index, holder) pair not asked yet, of an index not verified, best first."""
        cands = [Candidate(index, node, pos)
                 for index, nodes in list(self.holders.items()) if index not in self.fragments
                 for pos, node in enumerate(nodes) if (index, node.id) not in self.tried]
        return sorted(cands, key=lambda c: preference(self.net, self.k, c))

    def _busy(self) -> set[int]:
        """Indices being fetched and not verified yet."""
        return {cand.index for cand, _ in self.running.values()} - self.fragments.keys()

    def _launch(self) -> bool:
        """Ask the best candidate not asked yet; False when none is left.

        Candidates are ranked by :func:`preference` at the time of asking,
        so a node benched meanwhile (by this fetch or another) goes last.
        An index neither verified nor being fetched is preferred; else
        another holder of an index still being fetched.
        """
        busy = self._busy()
        wanted = self._untried()
        pick = next((c for c in wanted if c.index not in busy), None) \
            or next(iter(wanted), None)
        if pick is None:
            return False
        self.tried.add((pick.index, pick.node.id))
        task = asyncio.create_task(fetch_shard(self.net, self.ref, self.k, pick, self.problems))
        self.running[task] = (pick, asyncio.get_running_loop().time())
        return True

    def first_picks(self, flow: NodeFlow | None = None) -> list[Candidate]:
        """The k candidates a batched fetch asks first (distinct indices, best
        :func:`preference` first, and with ``flow`` the lowest
        :meth:`NodeFlow.cost` first among equal standing), marked as asked; with
        ``flow``, each pick's bytes are counted as asked of its node."""
        untried = self._untried()
        if flow is not None:
            untried.sort(key=lambda c: (preference(self.net, self.k, c)[:2],
                                        flow.cost(c.node.id, c.index >= self.k)))
        share = -(-self.ref.stored_size // self.k)
        picks: list[Candidate] = []
        for cand in untried:
            if all(p.index != cand.index for p in picks):
                picks.append(cand)
                self.tried.add((cand.index, cand.node.id))
                if flow is not None:
                    flow.asked(cand.node.id, share)
                if len(picks) == self.k:
                    break
        return picks

    def _top_up(self) -> None:
        """Keep enough distinct indices in flight to reach k if they all verify."""
        while len(self.fragments) + len(self._busy()) < self.k and self._launch():
            pass

    def _again(self, cand: Candidate) -> None:
        """Make ``cand`` a candidate again (its request timed out while the client
        stalled), at most :data:`CLIENT_RETRIES` times."""
        key = (cand.index, cand.node.id)
        if self.retries[key] < CLIENT_RETRIES:
            self.retries[key] += 1
            self.tried.discard(key)

    def _enough_candidates(self) -> bool:
        """True when verified, running and untried indices could make k."""
        indices = self.fragments.keys() | self._busy() | {c.index for c in self._untried()}
        return len(indices) >= self.k

    def _start_search(self) -> bool:
        """Look for more candidates in the background (:attr:`search`): first ask
        every node again (once), then wait for late ``has`` answers.
        False when neither is left."""
        if not self.relocated:
            self.relocated = True
            self.search = asyncio.create_task(relocate_chunk(
                self.net, self.ref, self.n, self.holders, self._enough_candidates,
                skip=set(self.fragments)))
        elif self.holders.late:
            self.search = asyncio.create_task(self.holders.wait_late())
        else:
            return False
        return True

    def take(self, future: asyncio.Future[Outcome]) -> bool:
        """Take the outcome of a finished request of :attr:`running`: a fragment is
        kept, an AGAIN makes its candidate askable again.  True for a fragment."""
        cand, _ = self.running.pop(future)
        self.shares.discard(future)
        outcome = None if future.cancelled() else future.result()
        if isinstance(outcome, bytes | memoryview):
            self.fragments.setdefault(cand.index, outcome)
            return True
        if outcome is Again.AGAIN:
            self._again(cand)
        return False

    def take_done(self) -> bool:
        """:meth:`take` every finished request; True when each one gave a fragment
        (else the fetch must go on with :meth:`run`)."""
        good = True
        for future in [f for f in self.running if f.done()]:
            good = self.take(future) and good
        return good

    async def run(self, first_hedge: float | None = None) -> dict[int, Fragment]:
        """At least k verified fragments by index.

        Args:
            first_hedge: loop time of the first hedge (default: ``hedge_after``
                seconds from now), for a fetch whose requests started earlier.

        Raises:
            ChunkUnavailableError: every candidate was tried, every node asked
                again, every late answer in, and fewer than k fragments verified.
        """
        loop = asyncio.get_running_loop()
        hedge_after = self.net.hedge_after
        self.take_done()
        self._top_up()
        next_hedge = loop.time() + hedge_after if first_hedge is None else first_hedge
        complete = False
        try:
            while len(self.fragments) < self.k:
                if not self.running and self.search is None and not self._start_search():
                    break
                waiting: set[asyncio.Future[Any]] = set(self.running)
                if self.search is not None:
                    waiting.add(self.search)
                done, _ = await asyncio.wait(waiting,
                                             timeout=max(0.0, next_hedge - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:  # hedge: one more candidate (late has answers included)
                    self._launch()
                    next_hedge = loop.time() + hedge_after
                    continue
                for future in done:
                    if future is self.search:
                        self.search = None
                        future.result()  # never raises for a node; a bug is not hidden
                        continue
                    self.take(future)
                self._top_up()
            complete = len(self.fragments) >= self.k
        finally:
            await self._stop(complete)
        if not complete:
            raise ChunkUnavailableError(
                f"chunk {self.ref.chunk_id.hex()[:16]}: {len(self.fragments)} of {self.k} "
                f"needed fragments verified ({'; '.join(self.problems) or 'no more holders'})")
        return self.fragments

    async def _stop(self, complete: bool) -> None:
        """Cancel what still runs; when the fetch completed, a single request
        running ``hedge_after`` seconds or more was hedged past: its node was
        slow (unless the client was busy meanwhile).  Batch shares are only
        withdrawn: the batch marks its own node
        (:class:`~storage_network.read.batch_fetch._Batch`)."""
        now = asyncio.get_running_loop().time()
        hedge_after = self.net.hedge_after
        if complete:
            for future, (cand, started) in self.running.items():
                if future in self.shares or now - started < hedge_after \
                        or self.net.was_busy(started, hedge_after) \
                        or self.net.nodes[cand.node.id].queued:
                    continue
                self.net.health.slow(cand.node.id, f"hedged past after {now - started:.1f} s "
                                     f"on shard {shard_id(self.ref.root, cand.index)[:20]}")
        tasks: set[asyncio.Future[Any]] = set(self.running)
        if self.search is not None:
            tasks.add(self.search)
        await cancel_and_wait(tasks)
        self.running.clear()
        self.shares.clear()
        self.search = None


async def fetch_chunk(net: NetworkClient, manifest: Manifest, ref: ChunkRef,
                      holders: Mapping[int, Sequence[NodeInfo]]) -> bytes:
    """Fetch, verify and decode one chunk; returns its zstd frame.

    Args:
        manifest: gives the codec, k and m (its chunk list is not used).
        holders: shard index -> nodes claiming that shard, in ranking order
            (from :func:`~storage_network.read.plan.plan_fetch` or
            :func:`~storage_network.read.locate.locate_shards`; a plain mapping
            is copied, a ``ShardHolders`` is added to).

    Requests are hedged after ``net.hedge_after`` seconds and every outcome
    is reported to ``net.health`` (see the module docstring).  Hashing and
    decoding run on the client's pool, off the event loop.

    Raises:
        ChunkUnavailableError: fewer than k shards could be fetched and
            verified (after asking every node again), or they did not
            decode to the chunk's frame.
        SealError: the manifest is sealed and the chunk does not open.
    """
    fetch = HedgedFetch(net, manifest, ref, shard_holders(net, ref, holders))
    fragments = await fetch.run()
    codec = net.codec(manifest.codec, manifest.k, manifest.m)
    frame = await net.compute(ref.stored_size, timed_decode, codec, manifest, ref, fragments)
    metrics.chunk_fetched(fragments.keys(), manifest.k)
    return frame


def timed_decode(codec: StripeCodec, manifest: Manifest, ref: ChunkRef,
                 fragments: Mapping[int, Fragment]) -> bytes:
    """The zstd frame of ``ref`` from verified ``fragments``: decoded, then opened
    if ``manifest`` is sealed (:func:`~storage_network.coding.codec.open_frame`);
    its time recorded in ``nixshard_decode_seconds``.

    Raises:
        ChunkUnavailableError: the fragments do not decode to the chunk.
        SealError: a sealed chunk does not open under its key.
    """
    started = time.perf_counter()
    try:
        return open_frame(manifest, ref, codec.decode(ref, fragments))
    finally:
        metrics.observe_decode(time.perf_counter() - started)

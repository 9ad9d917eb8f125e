"""The read path after the record: availability plan, hedged and verified chunk fetch.

The record itself is found by :func:`storage_network.read.record_lookup.fetch_record`.

A reader never runs out of candidates while k verified shards of a chunk exist:

- :func:`plan_fetch` finds every chunk's shards with
  :func:`~storage_network.read.locate.locate_shards` (one ``has`` request per
  node; shards past the first n nodes of a ranking are found too) and fails
  with :class:`ChunkUnavailableError` if any chunk has fewer than k claimed:
  callers do this before they commit to a response.  ``has`` answers slower
  than the client's ``hedge_after`` are not waited for once every chunk has
  k claimed shards, but they are not dropped either: they go on in the
  background and add their holders to the plan when they come.
- :func:`fetch_chunk` asks k nodes for k distinct shards, data shards on
  nodes in good standing first (see :mod:`storage_network.nodes.health`).
  Every body is checked against the stripe root.  A body that fails its
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
- :func:`fetch_chunks` does the same for a window of chunks, asking for
  each chunk's first k shards with one batch request per node
  (:mod:`storage_network.wire.shard_batch`).  A batch slower than
  ``hedge_after`` marks its node slow but is not cancelled while some chunk
  still waits for it; the chunks it holds up hedge with single requests.
- :func:`stream_payload` yields the chunks' zstd frames in order, fetching
  ``prefetch`` chunks ahead in windows, so that a chunk that cannot be
  rebuilt is usually known before its bytes are due.  A transfer fails
  (and its caller must abort the response) only when some chunk has fewer
  than k reachable shards at that moment.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage_network import metrics
from storage_network.client import NetworkClient, cancel_and_wait
from storage_network.coding.codec import StripeCodec
from storage_network.config import NodeInfo
from storage_network.errors import ChunkUnavailableError, NodeError, ShardProofError
from storage_network.nodes.health import CLIENT_RETRIES, blamed_on_client
from storage_network.nodes.placement import ranking
from storage_network.read.locate import ShardHolders, locate_shards, relocate_chunk
from storage_network.wire.manifest import ChunkRef, Manifest
from storage_network.wire.stripe import max_shard_bytes, shard_id, verify_shard

log = logging.getLogger("nixshard.network")
DEFAULT_PREFETCH = 64
WINDOW_CHUNKS = 32


class _Again(enum.Enum):
    """The outcome of a shard request that timed out because the client itself
    stalled: the node was not at fault and may be asked again."""

    AGAIN = "again"


_Outcome = bytes | None | _Again
"""A shard request's outcome: the verified fragment, None (failed, reported), or AGAIN."""


@dataclass(frozen=True)
class FetchPlan:
    """Where each chunk's shards are.

    Attributes:
        manifest: what is fetched.
        holders: per chunk, shard index -> the nodes claiming it, in the
            chunk's ranking order; at least k indices per chunk.  From
            :func:`plan_fetch` these are
            :class:`~storage_network.read.locate.ShardHolders`, which late ``has``
            answers keep adding to (a slice of them, for a sub-range, shares that).
    """

    manifest: Manifest
    holders: tuple[dict[int, list[NodeInfo]], ...]


async def plan_fetch(net: NetworkClient, manifest: Manifest) -> FetchPlan:
    """Find every chunk's shards; check each chunk has at least k claimed.

    Node failures are reported to ``net.health`` (see
    :func:`~storage_network.read.locate.locate_shards`).

    Raises:
        ChunkUnavailableError: the network has fewer than n nodes, or a
            chunk has fewer than k claimed shards (naming the first such
            chunk and the nodes that could not be reached).
    """
    nodes = net.network.nodes
    if len(nodes) < manifest.n:
        raise ChunkUnavailableError(
            f"manifest wants {manifest.n} shards a chunk, the network has {len(nodes)} nodes")
    found = await locate_shards(net, manifest.chunks, manifest.k, manifest.m,
                                want=manifest.k, settle=net.hedge_after)
    for number, have in enumerate(found.holders):
        if len(have) < manifest.k:
            down = ", ".join(sorted(found.unreachable)) or "none"
            raise ChunkUnavailableError(
                f"chunk {number} of {len(manifest.chunks)}: {len(have)} of {manifest.n} shards "
                f"reachable, {manifest.k} needed (unreachable nodes: {down})")
    return FetchPlan(manifest, tuple(found.holders))


@dataclass(frozen=True)
class _Candidate:
    """One shard request a chunk fetch may make: shard ``index`` from ``node``,
    the ``pos``-th of that shard's holders in ranking order."""

    index: int
    node: NodeInfo
    pos: int


def _preference(net: NetworkClient, k: int, cand: _Candidate
                ) -> tuple[int, int, bool, int, int]:
    """Sort key of a candidate, lower first: the node's standing and audit score
    bucket now (``net.health.rank``), data before parity, shard index, ranking order."""
    standing, bucket = net.health.rank(cand.node.id)
    return standing, bucket, cand.index >= k, cand.index, cand.pos


def _verify_all(items: Sequence[tuple[bytes, int, bytes | memoryview]]
                ) -> list[bytes | ShardProofError]:
    """The fragment of each ``(root, index, body)``, or why its proof failed (blocking)."""
    checked: list[bytes | ShardProofError] = []
    for root, index, body in items:
        try:
            checked.append(bytes(verify_shard(root, index, body)))
        except ShardProofError as exc:
            checked.append(exc)
    return checked


def _request_failed(net: NetworkClient, node: NodeInfo, exc: NodeError, what: str,
                    problems: list[str]) -> None:
    """Report a shard request (single or batch) that got no answer."""
    metrics.shard_error(node.id, "error")
    log.warning("%s: %s", what, exc)
    net.health.node_error(node.id, exc)
    problems.append(str(exc))


def _accept(net: NetworkClient, ref: ChunkRef, cand: _Candidate,
            body: bytes | memoryview | None,
            checked: bytes | ShardProofError | None, problems: list[str]) -> bytes | None:
    """The verified fragment of one answered shard, or None with the node reported.

    A missing claimed shard or bad data benches the node (``net.health``);
    the failure is logged and a line is added to ``problems``.
    """
    node, sid = cand.node, shard_id(ref.root, cand.index)
    if body is None:
        metrics.shard_error(node.id, "missing")
        log.warning("node %s claimed shard %s but does not serve it", node.id, sid[:20])
        net.health.bad(node.id, f"claimed shard {sid[:20]} but did not serve it")
        problems.append(f"node {node.id} claimed shard {cand.index} but does not serve it")
        return None
    if isinstance(checked, ShardProofError) or checked is None:
        metrics.shard_error(node.id, "bad")
        log.warning("node %s served bad data for shard %s: %s", node.id, sid[:20], checked)
        net.health.bad(node.id, f"served bad data for shard {sid[:20]}: {checked}")
        problems.append(f"node {node.id} served bad data for shard {cand.index}")
        return None
    net.health.served(node.id, len(body))
    return checked


async def _fetch_one(net: NetworkClient, ref: ChunkRef, k: int, cand: _Candidate,
                     problems: list[str]) -> _Outcome:
    """The verified fragment of one shard, None, or AGAIN (a timeout blamed on the client).

    On failure the node is reported to ``net.health`` (bad data and a
    missing claimed shard bench it; an error or timeout demotes it, unless
    blamed on the client), the failure is logged and a line is added to ``problems``.
    """
    node, sid = cand.node, shard_id(ref.root, cand.index)
    started = time.perf_counter()
    try:
        body = await net.nodes[node.id].get_shard(sid, max_shard_bytes(ref.stored_size, k))
    except NodeError as exc:
        metrics.observe_shard(node.id, time.perf_counter() - started, 0)
        _request_failed(net, node, exc, f"shard {sid[:20]}", problems)
        return _Again.AGAIN if blamed_on_client(exc) else None
    metrics.observe_shard(node.id, time.perf_counter() - started, len(body or b""))
    checked = None
    if body is not None:
        loop = asyncio.get_running_loop()
        (checked,) = await loop.run_in_executor(net.pool, _verify_all,
                                                [(ref.root, cand.index, body)])
    return _accept(net, ref, cand, body, checked, problems)


def _shard_holders(net: NetworkClient, ref: ChunkRef,
                   holders: Mapping[int, Sequence[NodeInfo]]) -> ShardHolders:
    """``holders`` as :class:`ShardHolders` (itself when it is one, else a copy)."""
    if isinstance(holders, ShardHolders):
        return holders
    have = ShardHolders(ranking(net.network.nodes, ref.chunk_id))
    for index, nodes in holders.items():
        for node in nodes:
            have.add(index, node)
    return have


class _HedgedFetch:
    """The requests of one chunk fetch (see :func:`fetch_chunk`).

    ``running`` maps each request in flight (a single request's task, or
    this chunk's share of a batch, see :class:`_Batch`) to its candidate and
    the loop time it started.
    """

    def __init__(self, net: NetworkClient, manifest: Manifest, ref: ChunkRef,
                 holders: ShardHolders) -> None:
        self.net, self.ref, self.k, self.n = net, ref, manifest.k, manifest.n
        self.holders = holders
        self.tried: set[tuple[int, str]] = set()
        self.retries: Counter[tuple[int, str]] = Counter()
        self.running: dict[asyncio.Future[_Outcome], tuple[_Candidate, float]] = {}
        self.shares: set[asyncio.Future[_Outcome]] = set()
        self.fragments: dict[int, bytes] = {}
        self.problems: list[str] = []
        self.search: asyncio.Task[object] | None = None
        self.relocated = False

    def _untried(self) -> list[_Candidate]:
        """Every (index, holder) pair not asked yet, of an index not verified, best first."""
        cands = [_Candidate(index, node, pos)
                 for index, nodes in list(self.holders.items()) if index not in self.fragments
                 for pos, node in enumerate(nodes) if (index, node.id) not in self.tried]
        return sorted(cands, key=lambda c: _preference(self.net, self.k, c))

    def _busy(self) -> set[int]:
        """Indices being fetched and not verified yet."""
        return {cand.index for cand, _ in self.running.values()} - self.fragments.keys()

    def _launch(self) -> bool:
        """Ask the best candidate not asked yet; False when none is left.

        Candidates are ranked by :func:`_preference` at the time of asking,
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
        task = asyncio.create_task(_fetch_one(self.net, self.ref, self.k, pick, self.problems))
        self.running[task] = (pick, asyncio.get_running_loop().time())
        return True

    def first_picks(self) -> list[_Candidate]:
        """The k candidates a batched fetch asks first (distinct indices, best
        :func:`_preference` first), marked as asked."""
        picks: list[_Candidate] = []
        for cand in self._untried():
            if all(p.index != cand.index for p in picks):
                picks.append(cand)
                self.tried.add((cand.index, cand.node.id))
                if len(picks) == self.k:
                    break
        return picks

    def _top_up(self) -> None:
        """Keep enough distinct indices in flight to reach k if they all verify."""
        while len(self.fragments) + len(self._busy()) < self.k and self._launch():
            pass

    def _again(self, cand: _Candidate) -> None:
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

    async def run(self) -> dict[int, bytes]:
        """At least k verified fragments by index.

        Raises:
            ChunkUnavailableError: every candidate was tried, every node asked
                again, every late answer in, and fewer than k fragments verified.
        """
        loop = asyncio.get_running_loop()
        hedge_after = self.net.hedge_after
        self._top_up()
        next_hedge = loop.time() + hedge_after
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
                    cand, _ = self.running.pop(future)
                    self.shares.discard(future)
                    outcome = None if future.cancelled() else future.result()
                    if isinstance(outcome, bytes):
                        self.fragments.setdefault(cand.index, outcome)
                    elif outcome is _Again.AGAIN:
                        self._again(cand)
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
        withdrawn: the batch marks its own node (:class:`_Batch`)."""
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
            (from :func:`plan_fetch` or :func:`~storage_network.read.locate.locate_shards`;
            a plain mapping is copied, a ``ShardHolders`` is added to).

    Requests are hedged after ``net.hedge_after`` seconds and every outcome
    is reported to ``net.health`` (see the module docstring).  Hashing and
    decoding run on the client's pool, off the event loop.

    Raises:
        ChunkUnavailableError: fewer than k shards could be fetched and
            verified (after asking every node again), or they did not
            decode to the chunk's frame.
    """
    fetch = _HedgedFetch(net, manifest, ref, _shard_holders(net, ref, holders))
    fragments = await fetch.run()
    codec = net.codec(manifest.codec, manifest.k, manifest.m)
    frame = await asyncio.get_running_loop().run_in_executor(net.pool, _timed_decode, codec,
                                                             ref, fragments)
    metrics.chunk_fetched(fragments.keys(), manifest.k)
    return frame


class _Batch:
    """One batch request to ``node`` for one shard of each of several chunk fetches.

    Each fetch gets a future for its share (in its ``running``); the batch
    resolves every share when its answer is in (a verified fragment, or None
    with the failure reported, see :func:`_accept`).  A share a fetch no
    longer needs is cancelled by it; once every share is, the request is
    cancelled.  A batch not answered within ``hedge_after`` seconds marks its
    node slow (unless the client was busy meanwhile).
    """

    def __init__(self, net: NetworkClient, node: NodeInfo,
                 wanted: list[tuple[_HedgedFetch, _Candidate]]) -> None:
        loop = asyncio.get_running_loop()
        self.net, self.node, self.wanted = net, node, wanted
        self.started = loop.time()
        self.shares: list[asyncio.Future[_Outcome]] = [loop.create_future() for _ in wanted]
        for (fetch, cand), share in zip(wanted, self.shares, strict=True):
            fetch.running[share] = (cand, self.started)
            fetch.shares.add(share)
            share.add_done_callback(self._withdrawn)
        self.task = asyncio.create_task(self._run())
        self._late = loop.call_later(net.hedge_after, self._check_late)
        self.task.add_done_callback(lambda _: self._late.cancel())

    def _withdrawn(self, _: asyncio.Future[_Outcome]) -> None:
        if all(share.done() for share in self.shares) and not self.task.done():
            self.task.cancel()

    def _check_late(self) -> None:
        if self.task.done() or self.net.was_busy(self.started, self.net.hedge_after) \
                or self.net.nodes[self.node.id].queued:  # queued behind the client's own slots
            return
        self.net.health.slow(self.node.id, f"batch of {len(self.wanted)} shards not answered "
                             f"within {self.net.hedge_after:g} s")

    def _resolve(self, share: asyncio.Future[_Outcome], outcome: _Outcome) -> None:
        if not share.done():
            share.set_result(outcome)

    async def _run(self) -> None:
        try:
            await self._ask()
        except Exception:  # a bug, not a node's doing: shown, and the chunks go on
            log.exception("batch of %d shards from node %s", len(self.wanted), self.node.id)
        finally:  # whatever happened, no share is left waiting
            for share in self.shares:
                self._resolve(share, None)

    async def _ask(self) -> None:
        net, node, wanted = self.net, self.node, self.wanted
        ids = [shard_id(fetch.ref.root, cand.index) for fetch, cand in wanted]
        started = time.perf_counter()
        try:
            limits = [max_shard_bytes(fetch.ref.stored_size, fetch.k) for fetch, _ in wanted]
            bodies = await net.nodes[node.id].get_shards(ids, limits)
        except NodeError as exc:
            metrics.observe_shard(node.id, time.perf_counter() - started, 0, len(ids))
            _request_failed(net, node, exc, f"batch of {len(ids)} shards", wanted[0][0].problems)
            outcome = _Again.AGAIN if blamed_on_client(exc) else None
            for (fetch, _), share in zip(wanted, self.shares, strict=True):
                if fetch is not wanted[0][0]:
                    fetch.problems.append(str(exc))
                self._resolve(share, outcome)
            return
        metrics.observe_shard(node.id, time.perf_counter() - started,
                              sum(len(b) for b in bodies if b is not None), len(ids))
        answered = [(fetch.ref.root, cand.index, body)
                    for (fetch, cand), body in zip(wanted, bodies, strict=True)
                    if body is not None]
        checked = iter(await asyncio.get_running_loop().run_in_executor(
            net.pool, _verify_all, answered))
        for (fetch, cand), body, share in zip(wanted, bodies, self.shares, strict=True):
            fragment = _accept(net, fetch.ref, cand, body,
                               None if body is None else next(checked), fetch.problems)
            self._resolve(share, fragment)


async def fetch_chunks(net: NetworkClient, manifest: Manifest, numbers: Sequence[int],
                       holders: Sequence[Mapping[int, Sequence[NodeInfo]]]) -> list[bytes]:
    """Fetch, verify and decode the chunks ``numbers`` of ``manifest`` together.

    Every chunk's k preferred shards are asked for in one batch request per
    node (:meth:`NodeClient.get_shards`, see :class:`_Batch`); each chunk
    then goes on as :func:`fetch_chunk` does (hedged single requests for what
    the batches do not give in time, candidates never dropped).  The frames
    are decoded in one hop to the client's pool.

    Args:
        holders: per chunk number of the manifest, as in :class:`FetchPlan`.

    Returns:
        The zstd frames, in the order of ``numbers``.

    Raises:
        ChunkUnavailableError: some chunk could not be rebuilt.
    """
    fetches = [_HedgedFetch(net, manifest, manifest.chunks[i],
                            _shard_holders(net, manifest.chunks[i], holders[i]))
               for i in numbers]
    by_node: dict[str, list[tuple[_HedgedFetch, _Candidate]]] = defaultdict(list)
    nodes: dict[str, NodeInfo] = {}
    for fetch in fetches:
        for cand in fetch.first_picks():
            by_node[cand.node.id].append((fetch, cand))
            nodes[cand.node.id] = cand.node
    batches = [_Batch(net, nodes[node_id], wanted) for node_id, wanted in by_node.items()]
    runs = [asyncio.create_task(fetch.run()) for fetch in fetches]
    try:
        fragments = await asyncio.gather(*runs)
    finally:
        await cancel_and_wait(set(runs))
        await cancel_and_wait({batch.task for batch in batches})
    codec = net.codec(manifest.codec, manifest.k, manifest.m)
    frames = await asyncio.get_running_loop().run_in_executor(
        net.pool, _decode_all, codec, [(f.ref, got) for f, got in zip(fetches, fragments,
                                                                       strict=True)])
    for got in fragments:
        metrics.chunk_fetched(got.keys(), manifest.k)
    return frames


def _decode_all(codec: StripeCodec, items: Sequence[tuple[ChunkRef, Mapping[int, bytes]]]
                ) -> list[bytes]:
    """:func:`_timed_decode` of each ``(ref, fragments)`` in one hop to the pool."""
    return [_timed_decode(codec, ref, fragments) for ref, fragments in items]


def _timed_decode(codec: StripeCodec, ref: ChunkRef, fragments: Mapping[int, bytes]) -> bytes:
    """``codec.decode(ref, fragments)``, its time recorded in ``nixshard_decode_seconds``."""
    started = time.perf_counter()
    try:
        return codec.decode(ref, fragments)
    finally:
        metrics.observe_decode(time.perf_counter() - started)


async def stream_payload(net: NetworkClient, plan: FetchPlan,
                         prefetch: int = DEFAULT_PREFETCH) -> AsyncIterator[bytes]:
    """Yield the zstd frame of every chunk in order, ``prefetch`` chunks ahead.

    Chunks are fetched in windows of up to :data:`WINDOW_CHUNKS` (one batch
    request per node per window, :func:`fetch_chunks`); ``prefetch // window``
    windows (at least one) are in flight while frames are yielded.

    Raises:
        ChunkUnavailableError: a chunk could not be rebuilt (the caller must
            then abort its response, never end it cleanly).
    """
    manifest = plan.manifest
    total = len(manifest.chunks)
    window = max(1, min(WINDOW_CHUNKS, prefetch))
    ahead = max(1, prefetch // window)
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
            for frame in await tasks.popleft():
                yield frame
    finally:
        await cancel_and_wait(set(tasks))

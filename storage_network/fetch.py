"""The read path after the record: availability plan, hedged and verified chunk fetch.

The record itself is found by :func:`storage_network.record_lookup.fetch_record`.

- :func:`plan_fetch` finds every chunk's shards with
  :func:`~storage_network.locate.locate_shards` (one ``has`` request per
  node; shards moved past the first n nodes of a ranking by repair are
  found too; ``has`` answers slower than the client's ``hedge_after`` are
  abandoned once every chunk has k claimed shards) and fails with
  :class:`ChunkUnavailableError` if any chunk has fewer than k: callers do
  this before they commit to a response.
- :func:`fetch_chunk` asks k nodes for k distinct shards, data shards on
  nodes in good standing first (see :mod:`storage_network.node_health`).
  Every body is checked against the stripe root.  A body that fails its
  proof, a 404 for a claimed shard, a connection error or a timeout counts
  against the node and another candidate is asked at once; when the k are
  not all verified within ``hedge_after`` seconds, one more candidate is
  asked per such period (another index, or another holder of the same
  index).  The first k verified fragments win; the other requests are
  cancelled, and the nodes of those that ran ``hedge_after`` seconds or
  more are recorded as slow.
- :func:`fetch_chunks` does the same for a window of chunks with one batch
  request per node (:mod:`storage_network.shard_batch`), falling back to
  :func:`fetch_chunk`'s single hedged requests for what the batch did not give.
- :func:`stream_payload` yields the chunks' zstd frames in order, fetching
  ``prefetch`` chunks ahead in windows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from . import metrics
from .codec import StripeCodec
from .errors import ChunkUnavailableError, NodeError, ShardProofError
from .locate import locate_shards
from .manifest import ChunkRef, Manifest
from .network_client import NetworkClient, cancel_and_wait
from .network_file import NodeInfo
from .stripe import max_shard_bytes, shard_id, verify_shard

log = logging.getLogger("nixshard.network")
DEFAULT_PREFETCH = 64
WINDOW_CHUNKS = 32


@dataclass(frozen=True)
class FetchPlan:
    """Where each chunk's shards are.

    Attributes:
        manifest: what is fetched.
        holders: per chunk, shard index -> the nodes claiming it, in the
            chunk's ranking order; at least k indices per chunk.
    """

    manifest: Manifest
    holders: tuple[dict[int, list[NodeInfo]], ...]


async def plan_fetch(net: NetworkClient, manifest: Manifest) -> FetchPlan:
    """Find every chunk's shards; check each chunk has at least k claimed.

    Nodes that do not answer count as failed in ``net.health``; nodes whose
    answer was abandoned (slower than ``net.hedge_after`` seconds while the
    others sufficed) as slow.

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
    for node_id, reason in found.unreachable.items():
        net.health.failed(node_id, reason)
    for node_id, reason in found.slow.items():
        net.health.slow(node_id, reason)
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


def _candidates(holders: dict[int, list[NodeInfo]]) -> list[_Candidate]:
    """Every (index, holder) pair of ``holders``."""
    return [_Candidate(index, node, pos)
            for index, nodes in holders.items() for pos, node in enumerate(nodes)]


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
                     problems: list[str]) -> bytes | None:
    """The verified fragment of one shard, or None.

    On failure the node is reported to ``net.health`` (bad data and a
    missing claimed shard bench it; an error or timeout demotes it), the
    failure is logged and a line is added to ``problems``.
    """
    node, sid = cand.node, shard_id(ref.root, cand.index)
    started = time.perf_counter()
    try:
        body = await net.nodes[node.id].get_shard(sid, max_shard_bytes(ref.stored_size, k))
    except NodeError as exc:
        metrics.observe_shard(node.id, time.perf_counter() - started, 0)
        _request_failed(net, node, exc, f"shard {sid[:20]}", problems)
        return None
    metrics.observe_shard(node.id, time.perf_counter() - started, len(body or b""))
    checked = None
    if body is not None:
        loop = asyncio.get_running_loop()
        (checked,) = await loop.run_in_executor(net.pool, _verify_all,
                                                [(ref.root, cand.index, body)])
    return _accept(net, ref, cand, body, checked, problems)


class _HedgedFetch:
    """The requests of one chunk fetch (see :func:`fetch_chunk`)."""

    def __init__(self, net: NetworkClient, ref: ChunkRef, k: int,
                 candidates: list[_Candidate]) -> None:
        self.net, self.ref, self.k = net, ref, k
        self.queue = candidates
        self.running: dict[asyncio.Task[bytes | None], tuple[_Candidate, float]] = {}
        self.fragments: dict[int, bytes] = {}
        self.problems: list[str] = []

    def _launch(self) -> bool:
        """Ask the best candidate not asked yet; False when none is left.

        Candidates are ranked by :func:`_preference` at the time of asking,
        so a node benched meanwhile (by this fetch or another) goes last.
        An index neither verified nor being fetched is preferred; else
        another holder of an index still being fetched.
        """
        busy = {cand.index for cand, _ in self.running.values()}
        wanted = sorted((c for c in self.queue if c.index not in self.fragments),
                        key=lambda c: _preference(self.net, self.k, c))
        pick = next((c for c in wanted if c.index not in busy), None) \
            or next(iter(wanted), None)
        if pick is None:
            return False
        self.queue.remove(pick)
        task = asyncio.create_task(_fetch_one(self.net, self.ref, self.k, pick, self.problems))
        self.running[task] = (pick, asyncio.get_running_loop().time())
        return True

    def first_picks(self) -> list[_Candidate]:
        """Take the k candidates a batched fetch asks first off the queue: distinct
        indices, best :func:`_preference` first."""
        picks: list[_Candidate] = []
        for cand in sorted(self.queue, key=lambda c: _preference(self.net, self.k, c)):
            if all(p.index != cand.index for p in picks):
                picks.append(cand)
                if len(picks) == self.k:
                    break
        for cand in picks:
            self.queue.remove(cand)
        return picks

    def _top_up(self) -> None:
        """Keep enough distinct indices in flight to reach k if they all verify."""
        while True:
            busy = {cand.index for cand, _ in self.running.values()} - self.fragments.keys()
            if len(self.fragments) + len(busy) >= self.k or not self._launch():
                return

    async def run(self) -> dict[int, bytes]:
        """At least k verified fragments by index.

        Raises:
            ChunkUnavailableError: every candidate was tried and fewer than
                k fragments verified.
        """
        loop = asyncio.get_running_loop()
        hedge_after = self.net.hedge_after
        self._top_up()
        next_hedge = loop.time() + hedge_after
        complete = False
        try:
            while len(self.fragments) < self.k and self.running:
                done, _ = await asyncio.wait(set(self.running),
                                             timeout=max(0.0, next_hedge - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    self._launch()
                    next_hedge = loop.time() + hedge_after
                    continue
                for task in done:
                    cand, _ = self.running.pop(task)
                    fragment = task.result()
                    if fragment is not None:
                        self.fragments.setdefault(cand.index, fragment)
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
        """Cancel what still runs; when the fetch completed, a request running
        ``hedge_after`` seconds or more was hedged past: its node was slow."""
        now = asyncio.get_running_loop().time()
        if complete:
            for cand, started in self.running.values():
                if now - started >= self.net.hedge_after:
                    self.net.health.slow(cand.node.id, f"hedged past after {now - started:.1f} s "
                                         f"on shard {shard_id(self.ref.root, cand.index)[:20]}")
        await cancel_and_wait(set(self.running))
        self.running.clear()


async def fetch_chunk(net: NetworkClient, manifest: Manifest, ref: ChunkRef,
                      holders: dict[int, list[NodeInfo]]) -> bytes:
    """Fetch, verify and decode one chunk; returns its zstd frame.

    Args:
        manifest: gives the codec, k and m (its chunk list is not used).
        holders: shard index -> nodes claiming that shard, in ranking order
            (from :func:`plan_fetch` or :func:`~storage_network.locate.locate_shards`).

    Requests are hedged after ``net.hedge_after`` seconds and every outcome
    is reported to ``net.health`` (see the module docstring).  Hashing and
    decoding run on the client's pool, off the event loop.

    Raises:
        ChunkUnavailableError: fewer than k shards could be fetched and
            verified, or they did not decode to the chunk's frame.
    """
    return await _finish(net, manifest, _HedgedFetch(net, ref, manifest.k, _candidates(holders)))


async def _finish(net: NetworkClient, manifest: Manifest, fetch: _HedgedFetch) -> bytes:
    """Complete ``fetch`` (shard requests as needed) and decode its frame."""
    fragments = await fetch.run()
    codec = net.codec(manifest.codec, manifest.k, manifest.m)
    frame = await asyncio.get_running_loop().run_in_executor(net.pool, _timed_decode, codec,
                                                             fetch.ref, fragments)
    metrics.chunk_fetched(fragments.keys(), manifest.k)
    return frame


async def _fetch_batch(net: NetworkClient, node: NodeInfo,
                       wanted: list[tuple[_HedgedFetch, _Candidate]]) -> None:
    """Ask ``node`` for the shards of ``wanted`` in one batch request; each
    verified fragment goes into its chunk's fetch, each failure is reported
    (see :func:`_accept`) and noted in that fetch's problems."""
    ids = [shard_id(fetch.ref.root, cand.index) for fetch, cand in wanted]
    started = time.perf_counter()
    try:
        limits = [max_shard_bytes(fetch.ref.stored_size, fetch.k) for fetch, _ in wanted]
        bodies = await net.nodes[node.id].get_shards(ids, limits)
    except NodeError as exc:
        metrics.observe_shard(node.id, time.perf_counter() - started, 0, len(ids))
        _request_failed(net, node, exc, f"batch of {len(ids)} shards", wanted[0][0].problems)
        for fetch, _ in wanted[1:]:
            fetch.problems.append(str(exc))
        return
    metrics.observe_shard(node.id, time.perf_counter() - started,
                          sum(len(b) for b in bodies if b is not None), len(ids))
    answered = [(fetch.ref.root, cand.index, body)
                for (fetch, cand), body in zip(wanted, bodies, strict=True) if body is not None]
    checked = iter(await asyncio.get_running_loop().run_in_executor(net.pool, _verify_all,
                                                                   answered))
    for (fetch, cand), body in zip(wanted, bodies, strict=True):
        fragment = _accept(net, fetch.ref, cand, body,
                           None if body is None else next(checked), fetch.problems)
        if fragment is not None:
            fetch.fragments.setdefault(cand.index, fragment)


async def fetch_chunks(net: NetworkClient, manifest: Manifest, numbers: Sequence[int],
                       holders: Sequence[dict[int, list[NodeInfo]]]) -> list[bytes]:
    """Fetch, verify and decode the chunks ``numbers`` of ``manifest`` together.

    Every chunk's k preferred shards are asked for in one batch request per
    node (:meth:`NodeClient.get_shards`).  A batch not answered within
    ``net.hedge_after`` seconds is abandoned and its node recorded as slow
    (its shards stay candidates, now ranked after nodes in good standing);
    a chunk left with fewer than k verified fragments (node down, shard
    missing, bad data, abandoned batch) goes on as :func:`fetch_chunk`
    does, with single, hedged shard requests to the remaining candidates.

    Args:
        holders: per chunk number of the manifest, as in :class:`FetchPlan`.

    Returns:
        The zstd frames, in the order of ``numbers``.

    Raises:
        ChunkUnavailableError: some chunk could not be rebuilt.
    """
    fetches = [_HedgedFetch(net, manifest.chunks[i], manifest.k, _candidates(holders[i]))
               for i in numbers]
    by_node: dict[str, list[tuple[_HedgedFetch, _Candidate]]] = defaultdict(list)
    nodes: dict[str, NodeInfo] = {}
    for fetch in fetches:
        for cand in fetch.first_picks():
            by_node[cand.node.id].append((fetch, cand))
            nodes[cand.node.id] = cand.node
    tasks = {asyncio.create_task(_fetch_batch(net, nodes[node_id], wanted)): node_id
             for node_id, wanted in by_node.items()}
    try:
        _, late = await asyncio.wait(tasks, timeout=net.hedge_after)
    finally:
        await cancel_and_wait(set(tasks))
    for task in late:
        node_id = tasks[task]
        net.health.slow(node_id, f"batch of {len(by_node[node_id])} shards not answered "
                        f"within {net.hedge_after:g} s")
        for fetch, cand in by_node[node_id]:  # slow, not wrong: it may still be asked alone
            fetch.queue.append(cand)
    # chunks the batches completed are decoded in one pool hop, the others finish alone
    ready = [f for f in fetches if len(f.fragments) >= manifest.k]
    rest = [f for f in fetches if len(f.fragments) < manifest.k]
    codec = net.codec(manifest.codec, manifest.k, manifest.m)
    frames = await asyncio.get_running_loop().run_in_executor(
        net.pool, _decode_all, codec, [(f.ref, f.fragments) for f in ready])
    for fetch in ready:
        metrics.chunk_fetched(fetch.fragments.keys(), manifest.k)
    finished = await asyncio.gather(*(_finish(net, manifest, f) for f in rest))
    by_fetch = dict(zip(ready + rest, frames + finished, strict=True))
    return [by_fetch[f] for f in fetches]


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
        for task in tasks:
            task.cancel()

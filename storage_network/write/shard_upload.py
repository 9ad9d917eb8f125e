"""Storing a batch of stripes around missing, full and slow nodes (docs/consistency.md).

Shard i of a chunk belongs on the i-th node of the chunk's rendezvous
ranking, its *home*.  :func:`upload_batch` stores every shard of a batch of
encoded chunks with one job per node and round (a signed ``has`` that
touches what the node holds, then one batch put of the rest):

- a node that fails (no connection, timeout, 507 disk full, 5xx, a
  malformed answer) is passed over for the rest of the payload: each of
  its shards goes to the next node past position n of its chunk's ranking
  (a *spare*) that holds no shard of that stripe yet;
- a node still busy ``hedge_after`` seconds after the last job of the batch
  ended, when at most m jobs are left (and the client's own event loop did
  not stall for half of that wait, see :meth:`NetworkClient.was_busy`), is
  raced: its shards also go to spares, and whichever stores a shard first
  wins; a job whose shards are all stored elsewhere is cancelled (a
  cancelled put leaves no partial shard: nodes write atomically), and a
  node hedged past is passed over for the rest of the payload too;
- a spare is asked for every shard of the stripe: when it holds another
  one already (an earlier degraded push put it there), that one counts and
  the shard goes further down the ranking, so no node holds two shards of
  a stripe.

A stripe is *complete* with n distinct shards stored, *degraded* with
fewer; the caller decides what is enough (:func:`storage_network.write.publish.store_payload`
commits with at least k + 1).  Memory: the batch's shard bodies, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from storage_network.client import NetworkClient, cancel_and_wait
from storage_network.coding.codec import EncodedChunk
from storage_network.config import NodeInfo
from storage_network.errors import NodeError, QuotaExceededError
from storage_network.nodes.placement import chunk_ranking
from storage_network.wire.stripe import shard_id
from storage_network.wire.write_auth import Publisher

log = logging.getLogger("nixshard.publish")


@dataclass
class StripeUpload:
    """Where the shards of one stripe went.

    Attributes:
        enc: the encoded chunk.
        rank: its full ranking (:func:`~storage_network.nodes.placement.chunk_ranking`).
        placed: shard index -> id of the first node known to hold it.
        used: ids of the nodes holding, or asked to hold, a shard of it.
        uploaded: True once any of its shards was written (not just found held).
    """

    enc: EncodedChunk
    rank: Sequence[NodeInfo]
    placed: dict[int, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    uploaded: bool = False
    _next_spare: int = 0

    def sid(self, index: int) -> str:
        """The id of shard ``index``."""
        return shard_id(self.enc.ref.root, index)

    def spare(self, avoid: set[str]) -> NodeInfo | None:
        """The next active node past position n of the ranking holding nothing of
        the stripe and not in ``avoid``; None when the ranking is exhausted
        (``draining`` nodes take no new shards)."""
        n = len(self.enc.bodies)
        self._next_spare = max(self._next_spare, n)
        while self._next_spare < len(self.rank):
            node = self.rank[self._next_spare]
            self._next_spare += 1
            if node.id not in self.used and node.id not in avoid and node.state == "active":
                self.used.add(node.id)
                return node
        return None


@dataclass
class _Job:
    """One node's share of a round: ``(stripe, index)`` pairs to store there."""

    node: NodeInfo
    shards: list[tuple[StripeUpload, int]]
    spare: bool
    started: float = 0.0  # time.monotonic()
    hedged: bool = False


@dataclass
class UploadState:
    """What one payload's uploads share across its batches.

    Attributes:
        avoid: ids of the nodes passed over for the rest of the payload.
        failures: node id -> why it was passed over (the first reason).
        stored_bytes: shard bytes written; reused_bytes: shard bytes found held.
    """

    avoid: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)
    stored_bytes: int = 0
    reused_bytes: int = 0

    def pass_over(self, node_id: str, why: str) -> None:
        """Place nothing more on ``node_id`` in this payload; log it once (at INFO: the
        caller reports :attr:`failures`, e.g. in the push summary)."""
        self.avoid.add(node_id)
        if node_id not in self.failures:
            self.failures[node_id] = why
            log.info("%s; its shards go to the next nodes of their rankings", why)


async def _run_job(net: NetworkClient, job: _Job, publisher: Publisher,
                   limit: asyncio.Semaphore) -> tuple[set[str], set[str]]:
    """``has`` (touching) then one batch put of what the node lacks.

    Returns ``(ids present before, ids uploaded)``.  On a spare every id of
    each stripe is asked, and a shard is not uploaded to a node holding
    another shard of its stripe.

    Raises:
        NodeError: the node failed either request.
    """
    client = net.nodes[job.node.id]
    if job.spare:
        asked = sorted({s.sid(i) for s, _ in job.shards for i in range(len(s.enc.bodies))})
    else:
        asked = [s.sid(i) for s, i in job.shards]
    present = await client.has(asked, touch=publisher)
    items = []
    for stripe, index in job.shards:
        sid = stripe.sid(index)
        if sid in present:
            continue
        if job.spare and any(stripe.sid(i) in present for i in range(len(stripe.enc.bodies))):
            continue
        items.append((sid, stripe.enc.bodies[index]))
    if items:
        async with limit:
            await client.put_shards(items, publisher)
    return present, {sid for sid, _ in items}


class _BatchUpload:
    """The rounds of one batch (see the module docstring)."""

    def __init__(self, net: NetworkClient, publisher: Publisher, state: UploadState,
                 limit: asyncio.Semaphore, stripes: list[StripeUpload]) -> None:
        self.net, self.publisher, self.state, self.limit = net, publisher, state, limit
        self.stripes = stripes
        self.running: dict[asyncio.Task[tuple[set[str], set[str]]], _Job] = {}

    def _launch(self, pairs: list[tuple[StripeUpload, int]],
                homes: bool = False) -> None:
        """Start one job per node for ``pairs`` (at home, or on spares)."""
        by_node: dict[str, list[tuple[StripeUpload, int]]] = defaultdict(list)
        infos: dict[str, NodeInfo] = {}
        spare: dict[str, bool] = {}
        for stripe, index in pairs:
            node = None
            if homes and index < len(stripe.rank):
                home = stripe.rank[index]
                if home.id not in self.state.avoid:
                    node = home
            if node is None:
                node = stripe.spare(self.state.avoid)
                if node is None:
                    continue  # no node left for it: the stripe stays degraded
                spare[node.id] = True
            by_node[node.id].append((stripe, index))
            infos[node.id] = node
        for node_id, shards in by_node.items():
            job = _Job(infos[node_id], shards, spare.get(node_id, False), time.monotonic())
            task = asyncio.create_task(_run_job(self.net, job, self.publisher, self.limit))
            self.running[task] = job

    def _unplaced(self, job: _Job) -> list[tuple[StripeUpload, int]]:
        return [(s, i) for s, i in job.shards if i not in s.placed]

    def _uncovered(self, job: _Job) -> list[tuple[StripeUpload, int]]:
        """The shards of ``job`` not stored yet and asked of no other running job."""
        covered = {(id(s), i) for other in self.running.values() if other is not job
                   for s, i in other.shards}
        return [(s, i) for s, i in self._unplaced(job) if (id(s), i) not in covered]

    def _finish(self, job: _Job, result: tuple[set[str], set[str]]) -> None:
        """Record what a job stored; send what it could not take further."""
        present, uploaded = result
        retry = []
        for stripe, index in job.shards:
            n = len(stripe.enc.bodies)
            sid = stripe.sid(index)
            for other in range(n):
                if stripe.sid(other) in present:
                    stripe.placed.setdefault(other, job.node.id)
            if sid in uploaded:
                stripe.placed.setdefault(index, job.node.id)
                stripe.uploaded = True
                self.state.stored_bytes += len(stripe.enc.bodies[index])
            elif sid in present:
                self.state.reused_bytes += len(stripe.enc.bodies[index])
            elif index not in stripe.placed:
                retry.append((stripe, index))  # the spare holds another shard of it
        self._launch(retry)

    def _fail(self, job: _Job, exc: NodeError) -> None:
        stop_if_over_quota(exc)
        self.net.health.node_error(job.node.id, exc)
        self.state.pass_over(job.node.id, str(exc))
        self._launch(self._uncovered(job))

    def _hedge(self) -> None:
        """Race every running job that is not raced yet on spares."""
        for job in list(self.running.values()):
            if not job.hedged:
                job.hedged = True
                self._launch(self._uncovered(job))

    async def _cancel_redundant(self) -> None:
        """Cancel the jobs whose shards are all stored elsewhere by now."""
        redundant = {task for task, job in self.running.items() if not self._unplaced(job)}
        for task in redundant:
            job = self.running.pop(task)
            if job.hedged:
                seconds = time.monotonic() - job.started
                if not self.net.was_busy(job.started, seconds):
                    self.net.health.slow(job.node.id, f"shard upload hedged past after "
                                         f"{seconds:.1f} s")
                self.state.pass_over(job.node.id, f"node {job.node.id}: shard upload still "
                                     f"running after {seconds:.1f} s, raced on other nodes")
        await cancel_and_wait(redundant)

    async def run(self) -> None:
        """Run rounds until no job is left."""
        self._launch([(s, i) for s in self.stripes for i in range(len(s.enc.bodies))],
                     homes=True)
        last_end: float | None = None  # time.monotonic() when a job last ended
        try:
            while self.running:
                timeout = None
                unhedged = sum(not job.hedged for job in self.running.values())
                if last_end is not None and unhedged <= self.net.network.m:
                    timeout = max(0.0, last_end + self.net.hedge_after - time.monotonic())
                done, _ = await asyncio.wait(set(self.running), timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    # a wait stretched by this client's own load (its loop stalled)
                    # says nothing about the nodes: wait once more instead of racing
                    assert last_end is not None
                    if not self.net.was_busy(last_end, time.monotonic() - last_end):
                        self._hedge()
                    last_end = time.monotonic()
                    continue
                last_end = time.monotonic()
                for task in done:
                    job = self.running.pop(task)
                    try:
                        self._finish(job, task.result())
                    except NodeError as exc:
                        self._fail(job, exc)
                await self._cancel_redundant()
        finally:
            await cancel_and_wait(set(self.running))


def stop_if_over_quota(exc: NodeError) -> None:
    """Stop the upload when ``exc`` is a node's quota refusal (402): the publisher is
    over its quota there, which no other node of the ranking would cure, and the
    node did not fail (its standing is untouched).

    Raises:
        QuotaExceededError: ``exc`` is a quota refusal.
    """
    quota = QuotaExceededError.from_node_error(exc)
    if quota is not None:
        raise quota from exc


async def upload_batch(net: NetworkClient, publisher: Publisher, batch: Sequence[EncodedChunk],
                       state: UploadState, limit: asyncio.Semaphore) -> list[StripeUpload]:
    """Store every shard of ``batch`` (see the module docstring).

    Args:
        state: shared by the batches of one payload (nodes passed over, byte counts).
        limit: batch puts in flight at once, over all batches.

    Returns:
        One :class:`StripeUpload` per distinct stripe of the batch, saying
        which shard indices are stored; never raises for a node failure.

    Raises:
        QuotaExceededError: a node refused shards because the publisher is over
            its quota there (:func:`stop_if_over_quota`); the batch's other
            uploads are cancelled.
    """
    stripes: dict[bytes, StripeUpload] = {}
    for enc in batch:
        if enc.ref.root not in stripes:
            rank = chunk_ranking(net.network, enc.ref.chunk_id)
            n = len(enc.bodies)
            stripes[enc.ref.root] = StripeUpload(
                enc, rank, used={node.id for node in rank[:n]})
    await _BatchUpload(net, publisher, state, limit, list(stripes.values())).run()
    return list(stripes.values())

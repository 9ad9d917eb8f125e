"""Where a stripe's shards are: follow the rendezvous ranking past the first n nodes.

Shard i of a chunk is written to the i-th node of the chunk's ranking (its
*home*).  When a home is lost, pushes and repair store the shard on the next
nodes of the same ranking (*spares*, see :mod:`storage_network.upkeep.repair`);
when nodes join or leave, ranks shift by a few places.  Signed records never
change, so readers find shards by asking, not by a table:

1. every home is asked (one ``POST /shards/has`` per node for all chunks
   at once) for its own shard id: in a network whose members have not
   changed since the push, this finds every shard with one id per shard;
2. for chunks that still lack ``want`` shards, every node of the ranking
   is asked for the missing ids it was not asked for yet (spares, shifted
   ranks).

The answer maps each chunk's shard indices to the nodes that claim them
(:class:`ShardHolders`, in ranking order), plus the nodes that did not
answer.  Every failed request is reported to the client's
:class:`~storage_network.nodes.health.NodeHealth` (``node_error``: a timeout
blamed on the client does not count against the node).

By default every answer is awaited (repair wants to know everything).  A
reader passes ``settle`` (seconds): once every chunk has ``want`` claimed
shards and either every node in good standing has answered or ``settle``
seconds have passed, :func:`locate_shards` returns.  The requests still
running are *not* cancelled: they go on in the background (bounded per
node, :class:`~storage_network.client.Background`) and add their
answers to the chunks' :class:`ShardHolders` when they come, so a reader
keeps every holder as a candidate for the whole transfer.  Their nodes are
recorded as slow, unless the client itself was busy meanwhile
(:meth:`~storage_network.client.NetworkClient.was_busy`).

:func:`relocate_chunk` asks every node of the network for every shard of
one chunk: what a reader does when a chunk's candidates run out.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from storage_network.client import NetworkClient
from storage_network.config import NodeInfo
from storage_network.errors import NodeError
from storage_network.nodes.health import CLIENT_RETRIES, Standing, blamed_on_client
from storage_network.nodes.placement import chunk_ranking
from storage_network.wire.manifest import ChunkRef
from storage_network.wire.stripe import shard_id

log = logging.getLogger("nixshard.network")


class ShardHolders(dict[int, list[NodeInfo]]):
    """One chunk's shard index -> the nodes claiming that shard, in ranking order.

    It may grow while a read runs: ``has`` answers that come after
    :func:`locate_shards` returned are added (:meth:`add`), and :attr:`late`
    holds the requests still running that may add some.

    Args:
        rank: the chunk's ranking (every node it may be on; kept, not copied:
            under placement groups it is shared by the chunks of a group).
    """

    def __init__(self, rank: Sequence[NodeInfo]) -> None:
        super().__init__()
        self.rank = rank
        self.late: set[asyncio.Task[None]] = set()

    def _position(self, node: NodeInfo) -> int:
        ids = [n.id for n in self.rank]
        return ids.index(node.id) if node.id in ids else len(ids)

    def add(self, index: int, node: NodeInfo) -> bool:
        """Note that ``node`` claims shard ``index``; False if that was known."""
        nodes = self.setdefault(index, [])
        if not nodes:  # the common case: one holder a shard
            nodes.append(node)
            return True
        if any(n.id == node.id for n in nodes):
            return False
        keys = [self._position(n) for n in nodes]
        nodes.insert(bisect.bisect(keys, self._position(node)), node)
        return True

    def holding(self) -> set[str]:
        """Ids of the nodes claiming any shard of the chunk."""
        return {node.id for nodes in self.values() for node in nodes}

    async def wait_late(self) -> bool:
        """Wait until one late request of :attr:`late` has ended (its answer, if
        any, is then added); False at once when none is running."""
        if not self.late:
            return False
        await asyncio.wait(set(self.late), return_when=asyncio.FIRST_COMPLETED)
        return True


@dataclass
class Locations:
    """Shard holders per chunk.

    Attributes:
        holders: per chunk (in the order asked), its :class:`ShardHolders`.
        rankings: per chunk, the chunk's full ranking.
        unreachable: node id -> why it did not answer.
        slow: node id -> why its answer was not waited for (only with
            ``settle``); such a node's answer may still be added to
            ``holders`` later.
    """

    holders: list[ShardHolders]
    rankings: list[Sequence[NodeInfo]]
    unreachable: dict[str, str] = field(default_factory=dict)
    slow: dict[str, str] = field(default_factory=dict)

    def holding(self, chunk: int) -> set[str]:
        """Ids of the nodes holding any shard of chunk number ``chunk``."""
        return self.holders[chunk].holding()


# one round of has requests: per node, the (chunk number, shard index) pairs it is asked about
Asks = dict[str, list[tuple[int, int]]]


class _Round:
    """The ``has`` requests of one round, each adding its answer to the holders
    as soon as it comes (whether or not the round still waits for it)."""

    def __init__(self, net: NetworkClient, refs: Sequence[ChunkRef],
                 holders: Sequence[ShardHolders], asks: Asks,
                 unreachable: dict[str, str]) -> None:
        self.net, self.refs, self.holders = net, refs, holders
        self.unreachable = unreachable
        self.nodes = {node.id: node for node in net.network.nodes}  # every ranking's nodes
        self.asks = asks
        self.tasks = {asyncio.create_task(self._ask(node_id, pairs)): node_id
                      for node_id, pairs in asks.items() if pairs}

    async def _ask(self, node_id: str, pairs: list[tuple[int, int]]) -> None:
        ids = sorted({shard_id(self.refs[chunk].root, index) for chunk, index in pairs})
        for attempt in range(CLIENT_RETRIES + 1):
            try:
                present = await self.net.nodes[node_id].has(ids)
                break
            except NodeError as exc:
                log.info("has: %s", exc)
                self.net.health.node_error(node_id, exc)
                if not blamed_on_client(exc) or attempt == CLIENT_RETRIES:
                    self.unreachable[node_id] = str(exc)
                    return
        node = self.nodes[node_id]
        for chunk, index in pairs:
            if shard_id(self.refs[chunk].root, index) in present:
                self.holders[chunk].add(index, node)

    async def settle(self, enough: Callable[[], bool], settle: float | None,
                     slow: dict[str, str]) -> None:
        """Wait for the answers (see the module docstring for ``settle``)."""
        pending = set(self.tasks)
        if settle is None:
            await asyncio.gather(*pending)
            return
        loop = asyncio.get_running_loop()
        begun = time.monotonic()
        deadline = loop.time() + settle
        try:
            while pending:
                good = [t for t in pending
                        if self.net.health.standing(self.tasks[t]) is Standing.GOOD]
                if enough() and (not good or loop.time() >= deadline):
                    break
                left = deadline - loop.time()
                _, pending = await asyncio.wait(pending, timeout=left if left > 0 else None,
                                                return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            for task in pending:
                task.cancel()
            raise
        busy = self.net.was_busy(begun, settle)
        for task in pending:
            self._go_late(task, settle, busy, slow)

    def _go_late(self, task: asyncio.Task[None], settle: float, busy: bool,
                 slow: dict[str, str]) -> None:
        """Let a request not waited for run on in the background."""
        node_id = self.tasks[task]
        if self.net.health.standing(node_id) is Standing.GOOD and not busy:
            reason = f"no has answer within {settle:g} s (not waited for)"
            slow[node_id] = reason
            self.net.health.slow(node_id, reason)
        # beyond the bound of late requests to this node, this one is dropped
        if self.net.background.adopt(task, f"has {node_id}"):
            waiting = [self.holders[chunk] for chunk in {chunk for chunk, _ in self.asks[node_id]}]
            for have in waiting:
                have.late.add(task)

            def ended(done: asyncio.Task[None]) -> None:
                for have in waiting:
                    have.late.discard(done)

            task.add_done_callback(ended)


async def locate_shards(net: NetworkClient, refs: Sequence[ChunkRef], k: int, m: int,
                        want: int | None = None, *, settle: float | None = None) -> Locations:
    """Find the holders of every shard of every chunk in ``refs``.

    Args:
        k, m: the stripe shape (from the manifest).
        want: shards a chunk needs before the search stops early; a reader
            passes ``k``, repair ``k + m`` (the default).
        settle: seconds after which, once every chunk has ``want`` claimed
            shards, slower ``has`` requests are no longer waited for (they go
            on in the background; see the module docstring).  None (the
            default) waits for every answer.

    Never raises for node failures: unreachable nodes are reported in
    :attr:`Locations.unreachable` (and to ``net.health``) and simply hold nothing.
    """
    n = k + m
    want = n if want is None else want
    rankings = [chunk_ranking(net.network, ref.chunk_id) for ref in refs]
    holders = [ShardHolders(rank) for rank in rankings]
    found = Locations(holders, rankings)

    def enough() -> bool:
        return all(len(have) >= want for have in holders)

    first: Asks = defaultdict(list)
    for chunk, rank in enumerate(rankings):
        for index, node in enumerate(rank[:n]):
            first[node.id].append((chunk, index))
    await _Round(net, refs, holders, first, found.unreachable).settle(enough, settle, found.slow)

    second: Asks = defaultdict(list)
    for chunk, (rank, have) in enumerate(zip(rankings, holders, strict=True)):
        missing = [i for i in range(n) if i not in have]
        if len(have) >= want or not missing:
            continue
        for pos, node in enumerate(rank):
            if node.id in found.unreachable or node.id in found.slow:
                continue
            second[node.id] += [(chunk, i) for i in missing if i != pos]
    if second:
        await _Round(net, refs, holders, second, found.unreachable).settle(
            enough, settle, found.slow)
    return found


async def relocate_chunk(net: NetworkClient, ref: ChunkRef, n: int, holders: ShardHolders,
                         enough: Callable[[], bool], skip: Collection[int] = ()) -> None:
    """Ask every node of the network about every shard of ``ref`` (but ``skip``);
    add what they claim to ``holders``.

    Returns once ``enough()`` holds and every node in good standing has
    answered, or once every node has answered; slower requests go on in the
    background and add their answers later (see the module docstring).
    Never raises for node failures.
    """
    asks: Asks = {node.id: [(0, i) for i in range(n) if i not in skip]
                  for node in holders.rank}
    await _Round(net, [ref], [holders], asks, {}).settle(enough, net.hedge_after, {})

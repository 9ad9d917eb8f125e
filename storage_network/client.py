"""One client for the whole network: a session, a node store per node, codecs, node health.

Also :class:`Background` (the client's fire-and-forget tasks: late ``has``
answers, read repairs) and :func:`cancel_and_wait`, for requests hedged past.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from storage_network.coding.codec import StripeCodec
from storage_network.coding.sealing import Keyring
from storage_network.config import MapFollow, Network
from storage_network.network_map.fetch import MapRefresher
from storage_network.nodes.base import NodeStore
from storage_network.nodes.health import NodeHealth
from storage_network.nodes.limits import AnswerBudget, Deadlines, LoopLag
from storage_network.nodes.registry import NodeContext, open_node
from storage_network.nodes.scores import Scores
from storage_network.read.flow import NodeFlow
from storage_network.read.record_memory import RecordMemory
from storage_network.wire.write_auth import Publisher

log = logging.getLogger("nixshard.network")

DEFAULT_HEDGE_AFTER = 0.5
LANES = 3
"""Batch reads in flight per node (:meth:`NetworkClient.lane`)."""
INLINE_BYTES = 4 << 20
"""CPU work over at most this many bytes runs on the event loop (:meth:`NetworkClient.compute`)."""
T = TypeVar("T")
DEFAULT_SLOTS = 16
BACKGROUND_PER_GROUP = 8
"""Most background tasks of one group (e.g. late ``has`` answers of one node) at once."""
BACKGROUND_TOTAL = 512
"""Most background tasks of one client at once."""


class Background:
    """A client's fire-and-forget tasks: referenced until they end, bounded in
    number, cancelled when the client closes.

    Tasks are counted per ``group`` (a label such as ``"has node-3"``): at most
    ``per_group`` of one group and ``total`` in all run at once; a task over
    either bound is cancelled (or, for a coroutine, not started).
    """

    def __init__(self, per_group: int = BACKGROUND_PER_GROUP,
                 total: int = BACKGROUND_TOTAL) -> None:
        self.per_group = per_group
        self.total = total
        self._tasks: dict[asyncio.Task[Any], str] = {}
        self._groups: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._tasks)

    def running(self, group: str) -> int:
        """Tasks of ``group`` running now."""
        return self._groups[group]

    def adopt(self, task: asyncio.Task[Any], group: str) -> bool:
        """Keep ``task`` running in the background; False (and ``task`` cancelled)
        when ``group`` or the client already has as many as allowed."""
        if task.done():
            return True
        if self._groups[group] >= self.per_group or len(self._tasks) >= self.total:
            task.cancel()
            return False
        self._tasks[task] = group
        self._groups[group] += 1
        task.add_done_callback(self._ended)
        return True

    def spawn(self, coro: Coroutine[Any, Any, Any], group: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` as a background task of ``group``; None (and ``coro`` closed,
        never started) when over a bound."""
        if self._groups[group] >= self.per_group or len(self._tasks) >= self.total:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro)
        self.adopt(task, group)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        group = self._tasks.pop(task, None)
        if group is not None:
            self._groups[group] -= 1
            if not self._groups[group]:
                del self._groups[group]
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed: %r", group, task.exception())

    async def idle(self) -> None:
        """Wait until every task running now has ended."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel every task and wait until they have ended."""
        await cancel_and_wait(set(self._tasks))


class NetworkClient:
    """Async context manager holding what readers and publishers share.

    That is an HTTP session, a client per node, codecs, ``pool``: the
    thread pool (one thread a core) that encodes, verifies and decodes off
    the event loop, and ``health``: how each node behaved on the read path
    (see :mod:`storage_network.nodes.health`).

    Args:
        network: the parsed network file.
        timeout: seconds for one node request, counted from when it is
            sent (see :class:`~storage_network.nodes.http.Deadlines`).
        deadlines: per-phase deadlines (overrides ``timeout``).
        slots: requests to one node at once; more wait inside the client,
            their deadlines not running (the client's connection pool has as
            many connections per node, so no request waits for a connection).
        scores: audit scores that order reads among nodes in good standing
            (loaded by the entry point; None: every node counts as 1.0).
        hedge_after: seconds a read waits for its first k shards (and for
            ``has`` answers) before it asks one more node per such period.
        repairer: a publisher key: record lookups then copy the newest
            version of a record to the replicas that lack it (read repair,
            see :mod:`storage_network.read.record_lookup`); None: no repair.
        keyring: the cache secrets of a private cache (loaded by the entry
            point; see :mod:`storage_network.coding.sealing`).  With it,
            :func:`~storage_network.write.publish.store_payload` seals every
            chunk under the current secret, and
            :func:`~storage_network.write.publish.publish_record` and
            :func:`~storage_network.read.record_lookup.fetch_record` take
            plain record keys and seal and open the records' metadata.
            Audit, repair and gc never need it.

    Also ``records``: the newest version of each record key this client has
    seen (:class:`~storage_network.read.record_memory.RecordMemory`), so it never
    serves an older one, and ``background``: its fire-and-forget tasks.

    Raises:
        ValueError: ``hedge_after`` is not positive.
    """

    def __init__(self, network: Network, timeout: float = 30.0, *,
                 deadlines: Deadlines | None = None, slots: int = DEFAULT_SLOTS,
                 scores: Scores | None = None, hedge_after: float = DEFAULT_HEDGE_AFTER,
                 repairer: Publisher | None = None, keyring: Keyring | None = None):
        if not hedge_after > 0:
            raise ValueError(f"hedge_after must be a positive number of seconds, "
                             f"not {hedge_after}")
        self.network = network
        self.hedge_after = hedge_after
        self.repairer = repairer
        self.keyring = keyring
        self.records = RecordMemory()
        self.background = Background()
        self.health = NodeHealth(scores)
        self.deadlines = deadlines or Deadlines.within(timeout)
        self._slots = slots
        self.lag = LoopLag()
        self._session: aiohttp.ClientSession | None = None
        self._budget = AnswerBudget()
        self._following: asyncio.Task[None] | None = None
        self.nodes: dict[str, NodeStore] = {}
        self._codecs: dict[tuple[str, int, int], StripeCodec] = {}
        self._lanes: dict[str, asyncio.Semaphore] = {}
        self.flow = NodeFlow()
        self.pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="nixshard-cpu")

    async def _follow(self) -> None:
        """Ask for newer epochs of the map :attr:`network` came from, and go on under
        each (:meth:`adopt`), until the client closes."""
        follow = self.network.follow
        assert follow is not None

        async def adopt(network: Network) -> None:
            assert refresher.current is not None
            await self.adopt(dataclasses.replace(
                network, follow=MapFollow(refresher.current, follow.every)))

        refresher = MapRefresher(follow.trusted, on_network=adopt, every=follow.every)
        await asyncio.sleep(follow.every)  # the map was fetched when the program began
        await refresher.run()

    async def __aenter__(self) -> NetworkClient:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._slots,
                                         keepalive_timeout=60)
        self._session = aiohttp.ClientSession(connector=connector)
        self.lag.start()
        ctx = self._context(self.network)
        self.nodes = {info.id: open_node(info, ctx) for info in self.network.nodes}
        if self.network.follow is not None:
            self._following = asyncio.create_task(self._follow())
        return self

    def _context(self, network: Network) -> NodeContext:
        assert self._session is not None, "the client is not open"
        return NodeContext(self._session, self.deadlines, self._slots, self.lag, self._budget,
                           network.publishers)

    async def adopt(self, network: Network) -> None:
        """Go on under ``network`` (the next epoch of the network map) while reads and
        pushes run.

        A node that joined gets a node store; a node whose URL changed gets a new
        one (the old one is closed).  The stores of nodes no longer listed stay
        open: a read started under the old epoch may still ask them for shards
        its rankings named (they are closed with the client).  Placement,
        record windows and the accepted publisher keys follow ``network`` from
        the next call on.
        """
        ctx = self._context(network)
        stale = []
        for info in network.nodes:
            known = self.nodes.get(info.id)
            if known is not None and known.url == info.url:
                continue
            if known is not None:
                stale.append(known)
            self.nodes[info.id] = open_node(info, ctx)
        self.network = network
        for node in stale:
            await node.close()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel the background tasks, close the HTTP session and stop the thread pool."""
        if self._following is not None:
            await cancel_and_wait({self._following})
            self._following = None
        await self.background.close()
        await self.lag.stop()
        for node in self.nodes.values():
            await node.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.pool.shutdown(wait=False, cancel_futures=True)

    def was_busy(self, since: float, period: float) -> bool:
        """True when this client's event loop stalled for at least half of ``period``
        seconds at once after monotonic time ``since``: a request that took
        ``period`` then may have waited on the client, not on its node, and
        must not mark the node slow."""
        return self.lag.worst_since(since) >= period / 2

    def lane(self, node_id: str) -> asyncio.Semaphore:
        """The read lanes of a node: :data:`LANES` batch reads in flight at once,
        more wait in order (asyncio's semaphore wakes its waiters first come,
        first served).  A node's link then carries a transfer's windows one
        after the other instead of sharing itself among all of them, so the
        first window is not delayed by the last and an answer is timed (for
        hedging) from when it left the client, not from when it was queued."""
        lane = self._lanes.get(node_id)
        if lane is None:
            lane = self._lanes[node_id] = asyncio.Semaphore(LANES)
        return lane

    async def compute(self, nbytes: int, fn: Callable[..., T], *args: Any,
                      inline: int = INLINE_BYTES) -> T:
        """``fn(*args)``, CPU work over about ``nbytes`` bytes: on the event loop up
        to ``inline`` bytes (default :data:`INLINE_BYTES`: a hop to the pool and back
        costs more CPU than hashing or copying that much), on the client's pool
        beyond, so the loop never stalls long."""
        if nbytes <= inline:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def codec(self, codec: str, k: int, m: int) -> StripeCodec:
        """A (cached) codec for the given parameters; zstd level from the network file."""
        key = (codec, k, m)
        if key not in self._codecs:
            self._codecs[key] = StripeCodec(k, m, codec, self.network.zstd_level)
        return self._codecs[key]


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` (tasks or futures) and wait until they have ended."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

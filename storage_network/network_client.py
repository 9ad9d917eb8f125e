"""One client for the whole network: a session, a node client per node, codecs, node health.

Also :func:`cancel_and_wait`, for requests hedged past.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

import aiohttp

from .codec import StripeCodec
from .network_file import Network
from .node_client import Deadlines, LoopLag, NodeClient
from .node_health import NodeHealth
from .scores import Scores

_T = TypeVar("_T")

DEFAULT_HEDGE_AFTER = 0.5
DEFAULT_SLOTS = 16


class NetworkClient:
    """Async context manager holding what readers and publishers share.

    That is an HTTP session, a client per node, codecs, ``pool``: the
    thread pool (one thread a core) that encodes, verifies and decodes off
    the event loop, and ``health``: how each node behaved on the read path
    (see :mod:`storage_network.node_health`).

    Args:
        network: the parsed network file.
        timeout: seconds for one node request, counted from when it is
            sent (see :class:`~storage_network.node_client.Deadlines`).
        deadlines: per-phase deadlines (overrides ``timeout``).
        slots: requests to one node at once; more wait inside the client,
            their deadlines not running (the client's connection pool has as
            many connections per node, so no request waits for a connection).
        scores: audit scores that order reads among nodes in good standing
            (loaded by the entry point; None: every node counts as 1.0).
        hedge_after: seconds a read waits for its first k shards (and for
            ``has`` answers) before it asks one more node per such period.

    Raises:
        ValueError: ``hedge_after`` is not positive.
    """

    def __init__(self, network: Network, timeout: float = 30.0, *,
                 deadlines: Deadlines | None = None, slots: int = DEFAULT_SLOTS,
                 scores: Scores | None = None, hedge_after: float = DEFAULT_HEDGE_AFTER):
        if not hedge_after > 0:
            raise ValueError(f"hedge_after must be a positive number of seconds, "
                             f"not {hedge_after}")
        self.network = network
        self.hedge_after = hedge_after
        self.health = NodeHealth(scores)
        self.deadlines = deadlines or Deadlines.within(timeout)
        self._slots = slots
        self.lag = LoopLag()
        self._session: aiohttp.ClientSession | None = None
        self.nodes: dict[str, NodeClient] = {}
        self._codecs: dict[tuple[str, int, int], StripeCodec] = {}
        self.pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="nixshard-cpu")

    async def __aenter__(self) -> NetworkClient:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._slots,
                                         keepalive_timeout=60)
        self._session = aiohttp.ClientSession(connector=connector)
        self.lag.start()
        self.nodes = {info.id: NodeClient(info, self._session, deadlines=self.deadlines,
                                          slots=self._slots, lag=self.lag)
                      for info in self.network.nodes}
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session and stop the thread pool."""
        await self.lag.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.pool.shutdown(wait=False, cancel_futures=True)

    def codec(self, codec: str, k: int, m: int) -> StripeCodec:
        """A (cached) codec for the given parameters; zstd level from the network file."""
        key = (codec, k, m)
        if key not in self._codecs:
            self._codecs[key] = StripeCodec(k, m, codec, self.network.zstd_level)
        return self._codecs[key]


async def cancel_and_wait(tasks: set[asyncio.Task[_T]]) -> None:
    """Cancel ``tasks`` and wait until they have ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

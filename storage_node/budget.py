"""The node-wide budget of request-body bytes read and held at once.

Every handler that reads a body (:func:`storage_node.body.read_body`) first
reserves room for it: its declared ``Content-Length``, or the route's cap
for a chunked body, and never more than the whole budget (so one body larger
than the budget still goes through, alone).  The room is held until the
request is answered (:meth:`BodyBudget.middleware` gives it back), since
the body stays in memory while it is checked and stored.  Requests that do
not fit wait their turn in arrival order; one that waited
:attr:`BodyBudget.wait` seconds without getting room is answered 503
(:class:`~storage_node.errors.Busy`, with ``Retry-After``), before any
of its body bytes is read.

So however many writers send large bodies at once, signed or not, a node
holds at most ``capacity`` bytes of bodies (plus aiohttp's small per-connection
buffers: a connection whose body is not being read stops being read from).
Cheap checks run before a reservation (:mod:`storage_node.write_auth`): an
unsigned, stale or foreign write never waits for room nor takes any.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .errors import Busy

# Request key under which the bytes a request holds are kept.
_HELD: Any = web.RequestKey("nixshard_node_body_bytes", int)


class BodyBudget:
    """Room for ``capacity`` bytes of request bodies at once, granted first come, first served.

    Args:
        capacity: bytes of bodies held at once (at least 1).
        wait: seconds a request waits for room before it is refused (503).
    """

    def __init__(self, capacity: int, wait: float) -> None:
        self.capacity = capacity
        self.wait = wait
        self.in_use = 0
        self._queue: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for room now."""
        return len(self._queue)

    def _grant_waiters(self) -> None:
        while self._queue:
            nbytes, future = self._queue[0]
            if future.done():  # gave up meanwhile
                self._queue.popleft()
                continue
            if self.in_use + nbytes > self.capacity:
                return
            self._queue.popleft()
            self.in_use += nbytes
            future.set_result(None)

    async def reserve(self, request: web.BaseRequest, nbytes: int, what: str) -> None:
        """Hold room for ``nbytes`` (capped at the capacity) of ``request``'s body until it is
        answered.  A request reserves once; a second call adds nothing.

        Raises:
            Busy: no room came free within :attr:`wait` seconds.
        """
        if request.get(_HELD) is not None:
            return
        nbytes = max(0, min(nbytes, self.capacity))
        if not self._queue and self.in_use + nbytes <= self.capacity:
            self.in_use += nbytes
            request[_HELD] = nbytes
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (nbytes, future)
        self._queue.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.wait)
        except TimeoutError:
            if future.done():  # granted just as the wait ran out: keep it
                request[_HELD] = nbytes
                return
            future.cancel()
            self._queue.remove(entry)
            self._grant_waiters()  # a large request giving up may let smaller ones in
            raise Busy(f"busy: {self.in_use} of {self.capacity} bytes of request bodies are "
                       f"being read; the {what} body ({nbytes} bytes) waited "
                       f"{self.wait:g} s for room") from None
        except BaseException:
            if future.done() and not future.cancelled():
                self.in_use -= nbytes
            else:
                future.cancel()
                if entry in self._queue:
                    self._queue.remove(entry)
            self._grant_waiters()
            raise
        request[_HELD] = nbytes

    def release(self, request: web.BaseRequest) -> None:
        """Give back what ``request`` holds (nothing if it holds nothing)."""
        nbytes = request.pop(_HELD, None)
        if nbytes is not None:
            self.in_use -= nbytes
            self._grant_waiters()

    def middleware(self) -> Middleware:
        """An aiohttp middleware that gives a request's room back once it is answered."""

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            try:
                return await handler(request)
            finally:
                self.release(request)

        return middleware

"""How long and how much a node answer may take, whatever the kind of node.

:class:`Deadlines` (per-phase seconds), :class:`LoopLag` (the client's own
event-loop stalls, so a timeout is blamed on whoever caused it),
:class:`AnswerBudget` (bytes of answers held at once over all nodes) and
:class:`RequestGate`, which puts the three together for one node: a request
waits for one of the node's slots inside the client (deadlines not running),
then runs under its deadlines, its answer's bytes charged to the budget.
Every kind of node (:mod:`storage_network.nodes.http`,
:mod:`storage_network.nodes.s3`) runs its requests through a gate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from storage_network import metrics
from storage_network.errors import NodeTimeoutError

SMALL_ANSWER_BYTES = 2 * 1024 * 1024
"""Cap of answers that are short by protocol (write acknowledgements, ``/healthz``)."""
RECORD_BATCH_ANSWER_BYTES = 8 * 1024 * 1024
"""Cap of one answer of many records (``get_records``): a page of typical records
(a few KB each) fits many times; a batch of large ones is read one record at a time."""
RECORD_FREE_BYTES = 256 * 1024
"""Bytes of a record answer held without reserving from the :class:`AnswerBudget`: a
record this size lists some 8000 chunks (a NAR of about 2 GB); larger ones reserve.
Records are the answers with the widest cap (:data:`MAX_RECORD_BYTES`), asked of a whole
window at once on every narinfo miss: without this, hostile nodes streaming endless
records would each hold the budget's full free allowance per request slot."""


@dataclass(frozen=True)
class Deadlines:
    """How long one node request may take, in seconds, counted from the moment it
    holds one of the node's slots (so never while it waits inside the client).

    Attributes:
        connect: to open a TCP connection.
        first_byte: from sending the request to the first byte of the answer.
        stall: longest pause between two pieces of the answer.
        total: the whole exchange: an answer that trickles in slower than
            this allows is abandoned, however steady.
    """

    connect: float = 5.0
    first_byte: float = 10.0
    stall: float = 10.0
    total: float = 30.0

    @classmethod
    def within(cls, seconds: float) -> Deadlines:
        """Deadlines for a client whose node timeout is ``seconds``: the whole
        exchange and each phase fit in it (connect at most 5 s)."""
        return cls(connect=min(5.0, seconds), first_byte=seconds, stall=seconds, total=seconds)


class LoopLag:
    """How late the event loop has been: a task wakes every ``tick`` seconds and
    records by how much it overslept (the loop was busy with other work).

    :meth:`worst_since` tells a timeout caused by the client's own load from one
    caused by the node.
    """

    def __init__(self, tick: float = 0.05, keep: int = 1200,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._tick = tick
        self._keep = keep
        self._clock = clock
        self._samples: list[tuple[float, float]] = []  # (when, lag seconds)
        self._task: asyncio.Task[None] | None = None
        self._due: float | None = None  # when the watcher should wake next

    def start(self) -> None:
        """Start watching (on the running loop); idempotent."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _watch(self) -> None:
        while True:
            before = self._clock()
            self._due = before + self._tick
            await asyncio.sleep(self._tick)
            now = self._clock()
            lag = now - before - self._tick
            if lag > self._tick:
                self._samples.append((now, lag))
                if len(self._samples) > self._keep:
                    del self._samples[:self._keep // 2]

    def worst_since(self, since: float) -> float:
        """The longest stall (seconds) of the loop after monotonic time ``since``: only
        the part of each stall that lies after ``since`` counts, and so does the
        stall the loop is in right now (the watcher overdue)."""
        now = self._clock()
        worst = 0.0 if self._due is None else max(0.0, now - max(since, self._due))
        for when, lag in reversed(self._samples):
            if when < since:
                break
            worst = max(worst, when - max(since, when - lag))
        return worst


class AnswerBudget:
    """Bytes of node answers being read into memory at once, over all nodes of a client.

    Every answer may hold ``free`` bytes on its own (a record answer at most
    :data:`RECORD_FREE_BYTES`); past that it must reserve each further MiB
    from a shared ``total``, so a few hostile
    nodes streaming endless answers (each up to its cap) cannot add more
    than ``total`` bytes to the client's memory, however many requests run.
    An answer waiting for room counts the wait against the client, not the
    node (:class:`~storage_network.errors.NodeTimeoutError` with blame
    ``"client"`` when its deadline passes meanwhile).

    Args:
        total: bytes shared by all answers past their free allowance.
        free: bytes every answer may hold without reserving.
    """

    STEP = 1 << 20

    def __init__(self, total: int = 64 << 20, free: int = 4 << 20) -> None:
        self.total, self.free = total, free
        self.used = 0
        self._changed = asyncio.Condition()

    async def reserve(self, nbytes: int) -> None:
        """Wait until ``nbytes`` fit under ``total``, then take them."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + nbytes <= self.total)
            self.used += nbytes

    async def release(self, nbytes: int) -> None:
        """Give back ``nbytes`` taken by :meth:`reserve`."""
        if nbytes:
            async with self._changed:
                self.used -= nbytes
                self._changed.notify_all()


@dataclass
class Charge:
    """What one answer took from the :class:`AnswerBudget` (bytes held free of charge and
    bytes reserved), and whether it is waiting for more right now."""

    free: int
    reserved: int = 0
    waiting: bool = False


@dataclass
class Exchange:
    """One request running under a :class:`RequestGate`.

    Attributes:
        phase: what the request waits for now (``"connect"``, ``"answer"``...): a
            timeout names it.
        charge: the answer's bytes held so far against the budget.
    """

    gate: RequestGate
    charge: Charge
    started: float
    phase: str = "connect"

    async def hold(self, nbytes: int) -> None:
        """Make room for an answer of ``nbytes`` bytes in all (reserving from the
        budget past the free allowance; waiting counts against the client)."""
        budget = self.gate.budget
        while nbytes > self.charge.free + self.charge.reserved:
            self.charge.waiting = True
            await budget.reserve(AnswerBudget.STEP)
            self.charge.waiting = False
            self.charge.reserved += AnswerBudget.STEP


@dataclass
class RequestGate:
    """The slots, deadlines and answer budget of one node's requests.

    Args:
        node_id: the node (for metrics and error messages).
        deadlines: per-phase seconds; ``total`` is enforced by :meth:`exchange`,
            the others by the node kind's transport.
        slots: requests to this node at once; more wait in the client, their
            deadlines not yet running.
        lag: the client's event-loop watcher (None: every timeout is the node's).
        budget: the answer budget shared by the client's nodes (None: one of its own).
    """

    node_id: str
    deadlines: Deadlines = field(default_factory=Deadlines)
    slots: int = 16
    lag: LoopLag | None = None
    budget: AnswerBudget = field(default_factory=AnswerBudget)
    _queued: int = 0

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.slots)

    @property
    def queued(self) -> int:
        """Requests to this node waiting inside the client for a slot right now."""
        return self._queued

    @asynccontextmanager
    async def exchange(self, what: str, free: int | None = None) -> AsyncIterator[Exchange]:
        """Run one request (``what``, e.g. ``"GET /shards/ID"``, names it in errors):
        wait for a slot, then give the body ``deadlines.total`` seconds.

        ``free``: bytes of the answer held without reserving from the budget
        (never more than the budget's ``free``, its default).

        Raises:
            NodeTimeoutError: the deadline passed; blamed on the client when
                the answer was waiting for budget room or the client's loop
                stalled meanwhile, else on the node.
        """
        queued = time.monotonic()
        self._queued += 1
        try:
            await self._slots.acquire()
        finally:
            self._queued -= 1
        started = time.monotonic()
        metrics.observe_node_queue(self.node_id, started - queued)
        cap = self.budget.free if free is None else min(free, self.budget.free)
        ex = Exchange(self, Charge(cap), started)
        try:
            async with asyncio.timeout(self.deadlines.total):
                yield ex
        except TimeoutError as exc:
            if ex.charge.waiting:
                raise NodeTimeoutError(f"node {self.node_id}: {what}: no room in the "
                                       "client's answer budget in time", "client") from exc
            raise self.timed_out(what, ex.phase, started) from exc
        finally:
            self._slots.release()
            await self.budget.release(ex.charge.reserved)

    def timed_out(self, what: str, phase: str, started: float) -> NodeTimeoutError:
        """The error for ``what`` timing out in ``phase`` after monotonic ``started``,
        blamed on the client when its event loop stalled for a good part of the wait."""
        elapsed = time.monotonic() - started
        lag = self.lag.worst_since(started) if self.lag is not None else 0.0
        blame = "client" if lag >= max(0.5, 0.25 * elapsed) else "node"
        note = f" (the client's event loop stalled {lag:.1f} s meanwhile)" \
            if blame == "client" else ""
        return NodeTimeoutError(f"node {self.node_id}: {what}: no {phase} within "
                                f"{elapsed:.1f} s{note}", blame)

"""How nodes behave on the read path: counters, benching, and the order reads prefer.

A :class:`NodeHealth` is owned by :class:`~storage_network.client.NetworkClient`;
the read path (:mod:`storage_network.read.chunk_fetch`, :mod:`storage_network.read.locate`,
:mod:`storage_network.read.record_lookup`) reports every outcome to it:

- :meth:`NodeHealth.served`: a shard that verified (count, bytes);
- :meth:`NodeHealth.bad`: a node served wrong or short bytes, or claimed a
  shard and then did not serve it.  The node is *benched* for
  ``bench_seconds`` (300 s), doubling each time it is benched again after
  a bench ended (at most ``max_bench_seconds``, one day).  The reason is
  kept and logged once, when the bench starts (``node X benched for 300 s:
  served bad data for shard ...``); more evidence during a bench only
  updates the reason;
- :meth:`NodeHealth.slow`: a request was hedged past (still running when k
  other shards had verified, or R record answers were in), a batch was not
  answered within ``hedge_after``, or a ``has`` answer was not waited for;
  the node is *demoted* for ``demote_seconds`` (30 s, doubling the same way
  up to ``max_demote_seconds``, 10 min).  Not reported when the client's
  own event loop stalled meanwhile
  (:meth:`~storage_network.client.NetworkClient.was_busy`): the
  wait was the client's;
- :meth:`NodeHealth.failed`: a connection error, timeout or error status;
  counted as a failure and demoted like a slow node;
- :meth:`NodeHealth.node_error`: any :class:`~storage_network.errors.NodeError`,
  sorted into the above: a malformed or oversized answer benches the node
  (:meth:`bad`), a timeout blamed on the client itself (its event loop
  stalled) is only counted in ``nixshard_node_timeouts_total{blame="client"}``,
  anything else demotes it (:meth:`failed`).  Readers ask a node again
  after such a timeout (:func:`blamed_on_client`, at most
  :data:`CLIENT_RETRIES` times a request): the node was never at fault.

Benched and demoted nodes are still used, last: :meth:`NodeHealth.rank`
orders nodes by standing (good, demoted, benched), then by audit score
bucket (:class:`~storage_network.nodes.scores.Scores`, given by the entry point;
a node never audited scores 1.0).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from storage_network import metrics
from storage_network.errors import NodeAnswerError, NodeError, NodeTimeoutError
from storage_network.nodes.scores import Scores

log = logging.getLogger("nixshard.network")

BENCH_SECONDS = 300.0
MAX_BENCH_SECONDS = 86_400.0
DEMOTE_SECONDS = 30.0
MAX_DEMOTE_SECONDS = 600.0
SCORE_BUCKETS = 4
CLIENT_RETRIES = 2
"""Times a reader asks a node again after a timeout blamed on the client itself."""


def blamed_on_client(exc: NodeError) -> bool:
    """True when ``exc`` is a timeout the client's own stalled event loop caused
    (:attr:`NodeTimeoutError.blame` ``"client"``): not the node's doing."""
    return isinstance(exc, NodeTimeoutError) and exc.blame == "client"


class Standing(enum.IntEnum):
    """A node's standing; lower is preferred."""

    GOOD = 0
    DEMOTED = 1
    BENCHED = 2


@dataclass
class _Penalty:
    """One kind of time-out (bench or demotion) of one node; times are monotonic seconds."""

    until: float = 0.0
    count: int = 0

    def impose(self, now: float, base: float, cap: float) -> float | None:
        """Start a penalty unless one runs; returns its length (s), or None if one ran."""
        if now < self.until:
            return None
        self.count += 1
        length: float = min(cap, base * 2.0 ** (self.count - 1))
        self.until = now + length
        return length


@dataclass
class _Node:
    shards_served: int = 0
    bytes_served: int = 0
    failures: int = 0
    slow_events: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class NodeStatus:
    """What the read path knows about one node.

    Attributes:
        node_id: the node.
        shards_served: shards it served that verified.
        bytes_served: their total size, bytes.
        failures: bad bodies, missing claimed shards, errors and timeouts.
        slow_events: requests hedged past and ``has`` answers abandoned.
        standing: ``"good"``, ``"demoted"`` or ``"benched"``.
        benched: True while benched.
        out_seconds: seconds left of the bench or demotion (0.0 when good).
        reason: the last thing that went wrong with it, or None.
        score: its audit score in [0, 1] (1.0 when never audited).
    """

    node_id: str
    shards_served: int
    bytes_served: int
    failures: int
    slow_events: int
    standing: str
    benched: bool
    out_seconds: float
    reason: str | None
    score: float


class NodeHealth:
    """Per-node counters and standing, for one client (not persisted).

    Args:
        scores: audit scores that order nodes of equal standing (None: all 1.0).
        bench_seconds, max_bench_seconds: first and longest bench, seconds.
        demote_seconds, max_demote_seconds: first and longest demotion, seconds.
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(self, scores: Scores | None = None, *,
                 bench_seconds: float = BENCH_SECONDS,
                 max_bench_seconds: float = MAX_BENCH_SECONDS,
                 demote_seconds: float = DEMOTE_SECONDS,
                 max_demote_seconds: float = MAX_DEMOTE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.scores = scores if scores is not None else Scores()
        self._bench = (bench_seconds, max_bench_seconds)
        self._demote = (demote_seconds, max_demote_seconds)
        self._clock = clock
        self._nodes: dict[str, _Node] = {}
        self._benches: dict[str, _Penalty] = {}
        self._demotions: dict[str, _Penalty] = {}

    def _node(self, node_id: str) -> _Node:
        return self._nodes.setdefault(node_id, _Node())

    def served(self, node_id: str, nbytes: int) -> None:
        """A shard of ``nbytes`` bytes from ``node_id`` verified."""
        node = self._node(node_id)
        node.shards_served += 1
        node.bytes_served += nbytes

    def bad(self, node_id: str, reason: str) -> None:
        """``node_id`` served bad data or lacked a shard it claimed: bench it.

        ``reason`` completes "node X benched ...: <reason>", e.g. ``served bad
        data for shard <id>: <why>``.
        """
        node = self._node(node_id)
        node.failures += 1
        node.reason = reason
        length = self._benches.setdefault(node_id, _Penalty()).impose(
            self._clock(), *self._bench)
        if length is not None:
            log.warning("node %s benched for %.0f s: %s", node_id, length, reason)

    def slow(self, node_id: str, reason: str) -> None:
        """``node_id`` was too slow (hedged past, or its answer abandoned): demote it."""
        node = self._node(node_id)
        node.slow_events += 1
        node.reason = reason
        self._demote_node(node_id, reason)

    def failed(self, node_id: str, reason: str) -> None:
        """A request to ``node_id`` failed (connection, timeout, error status): demote it."""
        node = self._node(node_id)
        node.failures += 1
        node.reason = reason
        self._demote_node(node_id, reason)

    def node_error(self, node_id: str, exc: NodeError) -> None:
        """Report a failed request to ``node_id`` by what went wrong (module docstring)."""
        if isinstance(exc, NodeTimeoutError):
            metrics.node_timeout(node_id, "client" if blamed_on_client(exc) else "node")
            if blamed_on_client(exc):
                log.info("not held against node %s: %s", node_id, exc)
                return
        if isinstance(exc, NodeAnswerError):
            self.bad(node_id, str(exc))
        else:
            self.failed(node_id, str(exc))

    def _demote_node(self, node_id: str, reason: str) -> None:
        length = self._demotions.setdefault(node_id, _Penalty()).impose(
            self._clock(), *self._demote)
        if length is not None:
            log.info("node %s demoted for %.0f s: %s", node_id, length, reason)

    def _out_until(self, node_id: str) -> tuple[Standing, float]:
        now = self._clock()
        bench = self._benches.get(node_id)
        if bench is not None and now < bench.until:
            return Standing.BENCHED, bench.until - now
        demotion = self._demotions.get(node_id)
        if demotion is not None and now < demotion.until:
            return Standing.DEMOTED, demotion.until - now
        return Standing.GOOD, 0.0

    def standing(self, node_id: str) -> Standing:
        """The node's standing now."""
        return self._out_until(node_id)[0]

    def score(self, node_id: str) -> float:
        """The node's audit score in [0, 1]."""
        return self.scores.score(node_id)

    def rank(self, node_id: str) -> tuple[int, int]:
        """Sort key of a node, lower preferred: (standing, audit score bucket).

        The bucket is 0 for scores above 0.75, then one more per 0.25 less.
        """
        score = max(0.0, min(1.0, self.score(node_id)))
        bucket = min(SCORE_BUCKETS - 1, int((1.0 - score) * SCORE_BUCKETS))
        return int(self.standing(node_id)), bucket

    def status(self, node_id: str) -> NodeStatus:
        """A snapshot of one node (a node never seen has zero counters)."""
        node = self._nodes.get(node_id, _Node())
        standing, left = self._out_until(node_id)
        return NodeStatus(node_id, node.shards_served, node.bytes_served, node.failures,
                          node.slow_events, standing.name.lower(),
                          standing is Standing.BENCHED, round(left, 3), node.reason,
                          self.score(node_id))

    def statuses(self, node_ids: Iterable[str]) -> list[NodeStatus]:
        """Snapshots of ``node_ids``, in that order."""
        return [self.status(node_id) for node_id in node_ids]

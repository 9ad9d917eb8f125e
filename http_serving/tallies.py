"""Request counts kept in plain Python numbers, folded into prometheus_client metrics
when their registry is collected (:mod:`http_serving.metrics` uses them).

Why: a prometheus_client ``Counter.inc`` takes a lock and checks its
arguments, a ``Histogram.observe`` walks its buckets and takes two locks;
the three of them per answered request (requests, seconds, bytes sent) cost
about 3 µs, a tenth of a small narinfo answer.  A :class:`Tally` adds to
plain ints instead (about 0.4 µs), and a :class:`Folder` registered in the
registry *before* the metrics adds what was counted since the last fold
to the metric children each time the registry is collected
(``generate_latest``, ``get_sample_value``): what is exposed is exact, never
late.

Only for a process whose metrics live in its own memory.  In
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, the
gateway's ``--workers N``) a scrape reads every worker's files, and a
worker's unfolded counts would be missing from it: there the metrics are
counted directly (:func:`multiprocess_mode`).

Threads: the counting thread (the event loop) is the only writer of a
tally's totals; a fold reads them and writes only what it has folded, under
a lock, so a fold from another thread loses nothing (it may leave the
newest counts for the next fold).
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric

from .workers import MULTIPROC_ENV


def multiprocess_mode() -> bool:
    """Whether prometheus_client keeps this process's metric values in shared files
    (then counts cannot wait for a fold: see the module docstring)."""
    return bool(os.environ.get(MULTIPROC_ENV))


class Tally:
    """The answers of one (route, method, status) counted since the process started,
    and how much of that is already in the metric children.

    Args:
        requests: the ``requests_total`` child it folds into.
        seconds: the ``request_seconds`` child (a histogram with upper bounds
            ``bounds``, seconds, ``+Inf`` last) it folds into.
        sent: the ``bytes_sent_total`` child it folds into.
        bounds: the histogram's bucket upper bounds, seconds, ascending.
    """

    __slots__ = ("_bounds", "_folded", "buckets", "requests", "seconds", "sent",
                 "seconds_sum", "sent_bytes", "count")

    def __init__(self, requests: Counter, seconds: Histogram, sent: Counter,
                 bounds: Sequence[float]) -> None:
        self.requests, self.seconds, self.sent = requests, seconds, sent
        self._bounds = tuple(bounds)
        self.count = 0  # answers
        self.seconds_sum = 0.0  # seconds of the timed answers
        self.buckets = [0] * len(self._bounds)  # timed answers per bucket (not cumulative)
        self.sent_bytes = 0
        # what the children hold of the above: count, seconds_sum, sent_bytes, buckets
        self._folded: tuple[int, float, int, list[int]] = (0, 0.0, 0, [0] * len(self._bounds))

    def add(self, seconds: float | None, sent: int) -> None:
        """Count one answer, taking ``seconds`` (None: untimed) and sending ``sent``
        body bytes."""
        self.count += 1
        if seconds is not None:
            self.seconds_sum += seconds
            self.buckets[bisect_left(self._bounds, seconds)] += 1
        if sent:
            self.sent_bytes += sent

    def add_now(self, seconds: float | None, sent: int) -> None:
        """:meth:`add` straight into the metric children (multiprocess mode: nothing is
        left to fold)."""
        self.requests.inc()
        if seconds is not None:
            self.seconds.observe(seconds)
        if sent:
            self.sent.inc(sent)

    def fold(self) -> None:
        """Add what was counted since the last fold to the metric children (call with
        the :class:`Folder`'s lock held)."""
        count, seconds_sum, sent_bytes = self.count, self.seconds_sum, self.sent_bytes
        buckets = list(self.buckets)
        folded_count, folded_sum, folded_sent, folded_buckets = self._folded
        if count > folded_count:
            self.requests.inc(count - folded_count)
        if sent_bytes > folded_sent:
            self.sent.inc(sent_bytes - folded_sent)
        _observed(self.seconds, [now - before for now, before in zip(buckets, folded_buckets,
                                                                      strict=True)],
                  seconds_sum - folded_sum)
        self._folded = (count, seconds_sum, sent_bytes, buckets)


def _observed(histogram: Histogram, per_bucket: Sequence[int], seconds: float) -> None:
    """Add to ``histogram`` (a child) ``per_bucket[i]`` observations in its bucket ``i``
    (not cumulative) that sum to ``seconds``: what as many ``observe`` calls would add.

    prometheus_client has no public call for that; this adds to the child's
    bucket and sum values (``_buckets``, ``_sum``: the same in every release
    since 0.0.x; ``tests/http_serving/test_tallies.py`` compares the result with
    ``observe``).
    """
    if not any(per_bucket):
        return
    for value, added in zip(histogram._buckets, per_bucket, strict=True):
        if added:
            value.inc(added)
    histogram._sum.inc(seconds)


class Folder:
    """The tallies of one registry, and the collector that folds them into its metrics.

    Register it (:meth:`register`) before the metrics it folds into, so that a
    collection of the registry folds before it reads them.  :attr:`received`
    is the request body bytes counted since the start (one unlabelled
    counter, :meth:`fold_received_into`).
    """

    def __init__(self) -> None:
        self.tallies: list[Tally] = []
        self.received = 0
        self._received_folded = 0
        self._received_counter: Counter | None = None
        self._lock = threading.Lock()

    def register(self, registry: CollectorRegistry) -> None:
        """Register as a collector of ``registry`` (one that exposes nothing itself)."""
        registry.register(self)

    def fold_received_into(self, counter: Counter) -> None:
        """Fold :attr:`received` into ``counter``."""
        self._received_counter = counter

    def fold(self) -> None:
        """Add everything counted since the last fold to the metrics."""
        with self._lock:
            for tally in list(self.tallies):
                tally.fold()
            received = self.received
            if received > self._received_folded and self._received_counter is not None:
                self._received_counter.inc(received - self._received_folded)
                self._received_folded = received

    def describe(self) -> Iterable[Metric]:
        """Nothing: the registry then knows no names of this collector."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Fold (the registry is being collected), and expose nothing."""
        self.fold()
        return []

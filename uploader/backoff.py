"""The retry schedule of failing items: capped exponential backoff with jitter.

Both push services use it: ``nixshard push --spool`` for spool files
(:mod:`uploader.spool`) and ``nixshard push --watch-store`` for store paths
(:mod:`uploader.watch`).  After an item's n-th failure in a row it waits
:func:`backoff_delay` seconds (``retry_delay`` doubling up to
``retry_max_delay``, drawn with jitter) before its next try, so an item that
keeps failing costs a log line every few minutes, not every round.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable, Iterable

DEFAULT_RETRY_DELAY = 2.0
"""Seconds before the first retry of a failing file (or path, with --watch-store)."""
DEFAULT_RETRY_MAX_DELAY = 300.0
"""Cap, in seconds, of the delay between two tries."""


def backoff_delay(failures: int, first: float, cap: float, jitter: float) -> float:
    """The delay (seconds) before the next try after ``failures`` failures in a row.

    Exponential with a cap and "equal jitter": the base delay is
    ``min(cap, first * 2 ** (failures - 1))`` and the result is drawn in
    ``[base / 2, base]`` by ``jitter``, so tries of many failing items spread
    out but never come sooner than half the base delay.

    Args:
        failures: consecutive failures so far (>= 1).
        first: base delay after the first failure, seconds (> 0).
        cap: largest base delay, seconds (>= ``first``).
        jitter: a number in ``[0, 1]`` (``random.random()``): 0 gives
            ``base / 2``, 1 gives ``base``.

    Raises:
        ValueError: any argument outside its range.
    """
    if failures < 1:
        raise ValueError(f"failures must be at least 1, not {failures}")
    if not first > 0:
        raise ValueError(f"the first retry delay must be a positive number of seconds, "
                         f"not {first}")
    if not cap >= first:
        raise ValueError(f"the retry delay cap ({cap} s) must be at least the first delay "
                         f"({first} s)")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be in [0, 1], not {jitter}")
    base = min(cap, first * 2.0 ** min(failures - 1, 62))
    return base * (0.5 + 0.5 * jitter)


class Backoff:
    """When each failing item (a spool file, a store path) may be tried again.

    An item never seen, or whose last try succeeded, is due at once.  After
    its n-th failure in a row it is due :func:`backoff_delay` seconds later.

    Args:
        first: seconds before the first retry (> 0).
        cap: largest base delay in seconds (>= ``first``).
        clock: monotonic seconds (default :func:`time.monotonic`).
        rand: a number in ``[0, 1)`` per failure (default :func:`random.random`).

    Raises:
        ValueError: ``first`` <= 0 or ``cap`` < ``first``.
    """

    def __init__(self, first: float = DEFAULT_RETRY_DELAY, cap: float = DEFAULT_RETRY_MAX_DELAY,
                 *, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        backoff_delay(1, first, cap, 0.0)  # checks first and cap
        self.first = first
        self.cap = cap
        self.clock = clock
        self.rand = rand
        self._failures: dict[Hashable, int] = {}
        self._due: dict[Hashable, float] = {}

    def failed(self, key: Hashable) -> float:
        """Note a failure of ``key``; returns the delay (seconds) before it is due again."""
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        delay = backoff_delay(count, self.first, self.cap, self.rand())
        self._due[key] = self.clock() + delay
        return delay

    def succeeded(self, key: Hashable) -> None:
        """Forget ``key``'s failures: it is due at once again."""
        self._failures.pop(key, None)
        self._due.pop(key, None)

    def failures(self, key: Hashable) -> int:
        """Failures of ``key`` in a row so far (0 when none)."""
        return self._failures.get(key, 0)

    def due(self, key: Hashable) -> bool:
        """Whether ``key`` may be tried now."""
        return self._due.get(key, float("-inf")) <= self.clock()

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        """Forget every item not in ``keys`` (gone from the spool or the store)."""
        keep = set(keys)
        for key in [k for k in self._failures if k not in keep]:
            self.succeeded(key)

    def next_due(self) -> float | None:
        """Seconds until the first waiting item is due (0 if one is), None when none waits."""
        if not self._due:
            return None
        return max(0.0, min(self._due.values()) - self.clock())

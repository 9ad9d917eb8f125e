"""A clock the test sets."""

from __future__ import annotations


class Clock:
    """A ``time.time``-like callable that answers :attr:`now` (1000.0 at first)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

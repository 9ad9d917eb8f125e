"""The nonces of accepted signed writes, so a captured write cannot be sent again.

Every signed write carries a random nonce and a date (see
:mod:`storage_network.wire.write_auth`); a node accepts a write only within
``max_skew`` seconds of its date, so it needs to remember a nonce only
until its date leaves that window.  The ledger keeps them in memory and
appends each to ``<data dir>/nonces`` (one ``<date> <nonce>`` line), so a
restarted node still refuses a replay of a write it accepted before the
restart.  The file is rewritten without expired lines when the node starts
and whenever it has grown past twice its live lines.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("nixshard.node")


class NonceLedger:
    """Nonces of accepted writes with their dates (unix seconds), for one data directory.

    Args:
        path: the ledger file (created if missing).
        max_skew: seconds a write's date may be away from now (the auth window).
        clock: unix seconds (tests may pass their own).
    """

    def __init__(self, path: Path, max_skew: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._max_skew = max_skew
        self._clock = clock
        self._seen: dict[str, int] = {}
        self._lines = 0
        try:
            text = path.read_text("ascii", errors="replace")
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            date, _, nonce = line.partition(" ")
            if date.isdigit() and nonce:
                self._seen[nonce] = int(date)
        self._rewrite()

    def _expired(self, date: int, now: float) -> bool:
        return date < now - self._max_skew

    def _rewrite(self) -> None:
        now = self._clock()
        self._seen = {n: d for n, d in self._seen.items() if not self._expired(d, now)}
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text("".join(f"{d} {n}\n" for n, d in self._seen.items()), "ascii")
        os.replace(tmp, self._path)
        self._lines = len(self._seen)

    def seen(self, nonce: str) -> bool:
        """True if a write with ``nonce`` was accepted and its date is still in the window."""
        date = self._seen.get(nonce)
        return date is not None and not self._expired(date, self._clock())

    def use(self, nonce: str, date: int) -> bool:
        """Record ``nonce`` (of a write dated ``date``) as used; False if it already was."""
        if self.seen(nonce):
            return False
        self._seen[nonce] = date
        with open(self._path, "a", encoding="ascii") as f:
            f.write(f"{date} {nonce}\n")
        self._lines += 1
        if self._lines > 2 * max(1024, len(self._seen)):
            self._rewrite()
        return True

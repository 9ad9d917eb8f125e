"""What each publisher keeps on this node, and the quota check every write passes.

**Who is charged.**  Every object the node stores (a shard, a record or a
tombstone) is charged, by its size in bytes, to the publisher key whose
signed write *placed* it: the first writer of a shard pays for it, a second
write of the same shard id (by anyone) costs nothing, and a record that
replaces another one is charged to the writer of the new bytes while the old
bytes are refunded to whoever paid for them.  Deleting an object (gc's
signed deletes) refunds its payer.  A shard healed in place keeps its payer.

**Where it is kept.**  One row per charged object in ``<data>/usage.sqlite``
(``objects(kind, name, publisher, bytes)``), written in the same worker
thread and under the same store lock as the file it accounts for, so
totals survive a restart.  At start the rows are reconciled with what the
data directory holds (:meth:`UsageLedger.reconcile`): a row whose file is
gone (a crash between the unlink and the row's removal) is dropped; a file
without a row (stored before this ledger existed, or in the instant before
a crash) is charged to nobody.  The ledger uses SQLite's WAL with
``synchronous=NORMAL``: a power cut may lose its last transactions, which
the reconciliation turns into uncharged files, never into charges for
files that are gone.

**The check** (:meth:`UsageLedger.reserve`): a write of ``need`` bytes by a
publisher with a quota passes only if ``charged + reserved + need <= quota``;
it then holds a :class:`Reservation` of ``need`` bytes until its objects
are charged (:meth:`UsageLedger.charge` releases it in the same step) or
it fails (:meth:`Reservation.release`).  Reservations are made on the event
loop, so two concurrent writes can never both pass on the same room.  A
publisher without a quota (not in the network file's ``[quotas]``) is
charged but never refused.  Tombstones are charged but never refused (a
deletion must not be blocked by the quota it frees).  A record replacing
one its writer paid for needs only the bytes it adds (a renewed lease of
the same size needs none).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import OverQuota

SHARD, RECORD = "shard", "record"
LEDGER_FILE = "usage.sqlite"
_SCHEMA = """CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, name TEXT NOT NULL, publisher TEXT NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (kind, name)) WITHOUT ROWID"""


@dataclass
class Reservation:
    """Room held for one write: ``nbytes`` bytes for ``publisher``, until charged or
    released (idempotent)."""

    ledger: UsageLedger
    publisher: str
    nbytes: int
    open: bool = True

    def release(self) -> None:
        """Give the room back (a no-op once charged or released)."""
        self.ledger._release(self)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class UsageLedger:
    """Bytes charged to each publisher key name on this node, with the quota check.

    Args:
        path: the SQLite file (created if missing).
        quotas: publisher key name -> bytes it may keep on this node; a name not
            listed has no quota.

    Raises:
        sqlite3.Error: the ledger file cannot be opened or is not a ledger.
    """

    def __init__(self, path: Path, quotas: Mapping[str, int]) -> None:
        self.path = path
        self.quotas = dict(quotas)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db_lock = threading.Lock()    # one SQLite transaction at a time
        self._mem_lock = threading.Lock()   # the in-memory totals and reservations
        self._charged: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        self._load()

    def _load(self) -> None:
        rows = self._db.execute(
            "SELECT publisher, SUM(bytes) FROM objects GROUP BY publisher").fetchall()
        with self._mem_lock:
            self._charged = {name: int(total) for name, total in rows if total}

    def close(self) -> None:
        """Close the SQLite connection (idempotent)."""
        with self._db_lock:
            self._db.close()

    # -- reading --------------------------------------------------------------------

    def usage(self) -> dict[str, int]:
        """Publisher key name -> bytes charged now (publishers with nothing charged left out)."""
        with self._mem_lock:
            return {name: total for name, total in self._charged.items() if total}

    def charged(self, publisher: str) -> int:
        """Bytes charged to ``publisher`` now."""
        with self._mem_lock:
            return self._charged.get(publisher, 0)

    def payer_of(self, kind: str, name: str) -> tuple[str, int] | None:
        """``(publisher, bytes)`` charged for object ``name`` of ``kind``, None when
        uncharged.  Blocking (one SQLite read)."""
        with self._db_lock:
            row = self._db.execute(
                "SELECT publisher, bytes FROM objects WHERE kind = ? AND name = ?",
                (kind, name)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    # -- the check ------------------------------------------------------------------

    def reserve(self, publisher: str, need: int, node_id: str) -> Reservation:
        """Hold ``need`` bytes (>= 0) of ``publisher``'s quota for one write.

        Raises:
            OverQuota: ``publisher`` has a quota and its charged bytes, plus what
                its writes in flight hold, plus ``need`` exceed it (the message
                says the publisher, its usage, its quota and ``need``).
        """
        quota = self.quotas.get(publisher)
        with self._mem_lock:
            charged = self._charged.get(publisher, 0)
            held = self._reserved.get(publisher, 0)
            if quota is not None and need > 0 and charged + held + need > quota:
                raise OverQuota(f"quota exceeded: publisher {publisher} keeps {charged + held} "
                                f"bytes on node {node_id}, its quota is {quota} bytes; the "
                                f"write needs {need} more")
            self._reserved[publisher] = held + need
        return Reservation(self, publisher, need)

    def _release(self, reservation: Reservation) -> None:
        with self._mem_lock:
            self._release_locked(reservation)

    def _release_locked(self, reservation: Reservation) -> None:
        if reservation.open:
            reservation.open = False
            left = self._reserved.get(reservation.publisher, 0) - reservation.nbytes
            if left > 0:
                self._reserved[reservation.publisher] = left
            else:
                self._reserved.pop(reservation.publisher, None)

    # -- charging and refunding (blocking: called on the store's worker threads) ----

    def charge(self, kind: str, objects: Iterable[tuple[str, int]], publisher: str,
               reservation: Reservation | None = None) -> int:
        """Charge ``publisher`` for each ``(name, bytes)`` of ``kind`` not charged yet
        (a name already charged, to anyone, costs nothing), and release
        ``reservation`` in the same step; returns the bytes charged.

        Blocking (one SQLite transaction): call it from the thread that placed
        the files, under the store lock that placed them.
        """
        added = 0
        with self._db_lock:
            with self._db:
                for name, size in objects:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?)",
                        (kind, name, publisher, size))
                    added += size if cur.rowcount == 1 else 0
            with self._mem_lock:
                if added:
                    self._charged[publisher] = self._charged.get(publisher, 0) + added
                if reservation is not None:
                    self._release_locked(reservation)
        return added

    def replace(self, kind: str, name: str, size: int, publisher: str,
                reservation: Reservation | None = None) -> None:
        """Charge ``publisher`` for object ``name`` (``size`` bytes) that replaced what was
        stored under that name, refunding the old payer; releases ``reservation``.

        Blocking: call it under the store lock that replaced the file.
        """
        with self._db_lock:
            with self._db:
                old = self._db.execute(
                    "SELECT publisher, bytes FROM objects WHERE kind = ? AND name = ?",
                    (kind, name)).fetchone()
                self._db.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?)",
                                 (kind, name, publisher, size))
            with self._mem_lock:
                if old is not None:
                    self._add(old[0], -int(old[1]))
                self._add(publisher, size)
                if reservation is not None:
                    self._release_locked(reservation)

    def refund(self, kind: str, name: str) -> None:
        """Refund the payer of object ``name`` of ``kind`` (deleted); nothing if uncharged.

        Blocking: call it under the store lock that deleted the file.
        """
        with self._db_lock:
            with self._db:
                old = self._db.execute(
                    "DELETE FROM objects WHERE kind = ? AND name = ? RETURNING publisher, bytes",
                    (kind, name)).fetchone()
            if old is not None:
                with self._mem_lock:
                    self._add(old[0], -int(old[1]))

    def _add(self, publisher: str, delta: int) -> None:
        total = self._charged.get(publisher, 0) + delta
        if total > 0:
            self._charged[publisher] = total
        else:
            self._charged.pop(publisher, None)

    def reconcile(self, kind: str, present: set[str]) -> int:
        """Drop the rows of ``kind`` whose object is not in ``present`` (the names the
        data directory holds); returns how many were dropped.  Blocking (start-up)."""
        with self._db_lock:
            names = [name for (name,) in self._db.execute(
                "SELECT name FROM objects WHERE kind = ?", (kind,))]
            gone = [name for name in names if name not in present]
            if gone:
                with self._db:
                    self._db.executemany("DELETE FROM objects WHERE kind = ? AND name = ?",
                                         [(kind, name) for name in gone])
        if gone:
            self._load()
        return len(gone)

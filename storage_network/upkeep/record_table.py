"""What a record scan found, kept on disk: the record table garbage collection works on.

Garbage collection must know every key of the network at once (what a record
that stays needs, transitively; which stripes some copy still references),
which in memory grows with the whole network: records with their manifests,
every copy, the graph of needs, the live stripes.  A :class:`RecordTable`
keeps all of it in an SQLite database in a temporary directory instead; the
process holds SQLite's page cache (:data:`CACHE_KIB`) and what its caller
keeps, whatever the size of the network.

Tables (one row per):

- ``keys``: key; what its newest valid version is (record or tombstone), its
  signed ``created`` and ``expires`` (unix seconds), SHA-256 digest, the
  manifest's codec, k and m, the key's last read (unix seconds, the latest
  atime over the nodes listing it) and, for a tombstone, its signed bytes;
  ``due``, ``lapsed`` and ``expiring`` are filled in by the expiry plan.
- ``copies``: (key, node) -> the digest of the valid version that node serves
  and whether it is a tombstone.
- ``copy_stripes``: (key, stripe root) for every stripe any valid copy of the
  key references (32-byte roots).
- ``links``: a live record's links as the caller's link reader read them
  (label, pin name, how many keys the pin names, the rank of the secret that
  sealed it) or why they could not be read; ``needs``: (key, needed key).
- ``live``: stripe roots that stay (the sweep's live set).

The connection may be used from one thread at a time (the event loop, or a
worker thread while the loop awaits it); the table is not shared between
tasks that run SQL at once.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from storage_network.upkeep.record_scan import RecordCopy
from storage_network.wire.record import Record

__all__ = ["CACHE_KIB", "KeyRow", "RecordTable"]

CACHE_KIB = 16 * 1024
"""SQLite's page cache, KiB: the table's share of the collector's memory."""

_SCHEMA = """
CREATE TABLE keys(
    key TEXT PRIMARY KEY,
    tombstone INTEGER NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER,
    digest BLOB NOT NULL,
    codec TEXT NOT NULL,
    k INTEGER NOT NULL,
    m INTEGER NOT NULL,
    last_read REAL NOT NULL,
    tomb BLOB,
    due TEXT,
    lapsed INTEGER NOT NULL DEFAULT 0,
    expiring INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE copies(
    key TEXT NOT NULL, node TEXT NOT NULL, digest BLOB NOT NULL, tombstone INTEGER NOT NULL,
    PRIMARY KEY(key, node)
) WITHOUT ROWID;
CREATE TABLE copy_stripes(key TEXT NOT NULL, root BLOB NOT NULL,
                          PRIMARY KEY(key, root)) WITHOUT ROWID;
CREATE TABLE links(
    key TEXT PRIMARY KEY, label TEXT, pin TEXT, named INTEGER NOT NULL DEFAULT 0,
    rank INTEGER NOT NULL DEFAULT 0, unread TEXT
) WITHOUT ROWID;
CREATE TABLE needs(key TEXT NOT NULL, need TEXT NOT NULL,
                   PRIMARY KEY(key, need)) WITHOUT ROWID;
CREATE INDEX needs_by_need ON needs(need, key);
CREATE TABLE live(root BLOB PRIMARY KEY) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class KeyRow:
    """One key's newest version as the table holds it.

    Attributes:
        key: the record key.
        tombstone: the newest version is a tombstone (the key is deleted).
        created: its signed ``created``, unix seconds.
        digest: its SHA-256 (:attr:`Record.digest`).
        codec, k, m: its manifest's erasure code.
        tomb: the tombstone's signed bytes (None for a record).
    """

    key: str
    tombstone: bool
    created: int
    digest: bytes
    codec: str
    k: int
    m: int
    tomb: bytes | None


class RecordTable:
    """Records found by a scan, on disk (module docstring).  Use it as a context
    manager, or call :meth:`close`: the database and its directory go with it.

    Args:
        directory: where the temporary directory is made (default: ``TMPDIR``).
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="nixshard-records-", dir=directory)
        self.db = sqlite3.connect(Path(self._dir.name) / "records.sqlite",
                                  check_same_thread=False, isolation_level=None)
        self.db.executescript(f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                              f"PRAGMA cache_size=-{CACHE_KIB}; PRAGMA temp_store=FILE;"
                              + _SCHEMA)

    def close(self) -> None:
        """Close the database and delete it."""
        self.db.close()
        self._dir.cleanup()

    def __enter__(self) -> RecordTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- filling ----------------------------------------------------------------------

    def add(self, key: str, newest: Record, last_read: float,
            copies: Mapping[str, RecordCopy]) -> None:
        """Add ``key``: its newest valid version, its last read (unix seconds) and every
        valid copy (node id -> copy, any version).  A key is added once."""
        man = newest.manifest
        tomb = next((c.data for c in copies.values() if c.record.digest == newest.digest),
                    None) if newest.tombstone else None
        self.db.execute("INSERT INTO keys(key, tombstone, created, expires, digest, codec, "
                        "k, m, last_read, tomb) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (key, int(newest.tombstone), newest.created, newest.expires,
                         newest.digest, man.codec, man.k, man.m, last_read, tomb))
        self.db.executemany("INSERT INTO copies VALUES (?,?,?,?)",
                            [(key, node_id, c.record.digest, int(c.record.tombstone))
                             for node_id, c in copies.items()])
        self.db.executemany("INSERT OR IGNORE INTO copy_stripes VALUES (?,?)",
                            [(key, ref.root) for c in copies.values()
                             for ref in c.record.manifest.chunks])

    def add_links(self, key: str, *, label: str | None, pin: str | None = None,
                  named: int = 0, rank: int = 0, needs: Iterable[str] = (),
                  unread: str | None = None) -> None:
        """Note what the live record ``key`` says of other records (see
        :mod:`storage_network.upkeep.record_expiry`): ``needs``, stored keys (any,
        filtered to live keys when planned); ``unread``: why its links could not be
        read (then nothing else)."""
        self.db.execute("INSERT INTO links VALUES (?,?,?,?,?,?)",
                        (key, label, pin, named, rank, unread))
        self.db.executemany("INSERT OR IGNORE INTO needs VALUES (?,?)",
                            [(key, need) for need in needs])

    def begin(self) -> None:
        """Start a transaction (many adds at once are much faster in one)."""
        self.db.execute("BEGIN")

    def commit(self) -> None:
        """End the transaction :meth:`begin` started."""
        self.db.execute("COMMIT")

    # --- reading ----------------------------------------------------------------------

    def count(self, where: str = "1", *args: object) -> int:
        """Keys whose row matches the SQL condition ``where``."""
        got: int = self.db.execute(f"SELECT count(*) FROM keys WHERE {where}",
                                   args).fetchone()[0]
        return got

    def row(self, key: str) -> KeyRow:
        """``key``'s newest version.

        Raises:
            KeyError: the table has no such key.
        """
        got = self.db.execute("SELECT key, tombstone, created, digest, codec, k, m, tomb "
                              "FROM keys WHERE key = ?", (key,)).fetchone()
        if got is None:
            raise KeyError(key)
        return KeyRow(got[0], bool(got[1]), *got[2:])

    def copies(self, key: str) -> dict[str, tuple[bytes, bool]]:
        """Node id -> (digest, is a tombstone) of every valid copy of ``key``."""
        return {node: (digest, bool(tomb)) for node, digest, tomb in self.db.execute(
            "SELECT node, digest, tombstone FROM copies WHERE key = ?", (key,))}

    def keys(self, where: str, *args: object, batch: int = 256) -> Iterator[list[str]]:
        """The keys whose row matches ``where``, in key order, ``batch`` at a time (the
        query is run again from the last key for each batch, so the table may change
        in between)."""
        after = ""
        while True:
            got = [k for (k,) in self.db.execute(
                f"SELECT key FROM keys WHERE key > ? AND ({where}) ORDER BY key LIMIT ?",
                (after, *args, batch))]
            if not got:
                return
            yield got
            after = got[-1]

    def label(self, key: str) -> str | None:
        """The label the link reader gave ``key``, None if it gave none."""
        got = self.db.execute("SELECT label FROM links WHERE key = ?", (key,)).fetchone()
        return None if got is None else got[0]

    def needs_of(self, key: str) -> list[str]:
        """The keys ``key`` needs, sorted."""
        return [n for (n,) in self.db.execute(
            "SELECT need FROM needs WHERE key = ? ORDER BY need", (key,))]

    # --- the live set ----------------------------------------------------------------

    def keep(self, key: str) -> None:
        """Every stripe of every copy of ``key`` stays (joins the live set)."""
        self.db.execute("INSERT OR IGNORE INTO live SELECT root FROM copy_stripes "
                        "WHERE key = ?", (key,))

    def keep_where(self, where: str, *args: object) -> None:
        """:meth:`keep` for every key whose row matches ``where``."""
        self.db.execute("INSERT OR IGNORE INTO live SELECT s.root FROM copy_stripes s "
                        f"JOIN keys ON keys.key = s.key WHERE {where}", args)

    def live_count(self) -> int:
        """Stripes in the live set."""
        got: int = self.db.execute("SELECT count(*) FROM live").fetchone()[0]
        return got

    def __contains__(self, root: object) -> bool:
        """Whether the stripe ``root`` (32 bytes) is live."""
        return self.db.execute("SELECT 1 FROM live WHERE root = ?", (root,)).fetchone() \
            is not None

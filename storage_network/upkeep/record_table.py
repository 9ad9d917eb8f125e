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
  ``due``, ``lapsed``, ``expiring`` and ``retained`` (why a due record
  stays) are filled in by the expiry plan.
- ``copies``: (key, node) -> the digest of the valid version that node serves
  and whether it is a tombstone.
- ``copy_stripes``: (key, stripe root) for every stripe any valid copy of the
  key references (32-byte roots).
- ``links``: a live record's links as the caller's link reader read them
  (label, pin name, how many keys the pin names, the rank of the secret that
  sealed it) or why they could not be read; ``needs``: (key, needed key).
- ``stripes``: stripe root -> the stripe as the first live record (in key
  order) referencing it describes it (:class:`Stripe`); repair walks them.
- ``live``: stripe roots that stay (the sweep's live set).

:func:`scan_into` fills a table from a
:class:`~storage_network.upkeep.record_scan.RecordScan`.

The connection may be used from one thread at a time (the event loop, or a
worker thread while the loop awaits it); the table is not shared between
tasks that run SQL at once, except for live-set lookups (``in``), which take
the table's lock and may run on several threads (the sweep's).
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from storage_network.client import NetworkClient
from storage_network.errors import RecordTableError
from storage_network.upkeep.record_scan import RecordCopy, RecordScan, ScannedKey
from storage_network.wire.manifest import ChunkRef
from storage_network.wire.record import Record
from storage_network.wire.write_auth import PublisherKey

__all__ = ["CACHE_KIB", "KEYS_PER_TRANSACTION", "KeyRow", "RecordTable", "ScanOutcome",
           "Stripe", "record_table", "scan_into"]

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
    expiring INTEGER NOT NULL DEFAULT 0,
    retained TEXT
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
CREATE TABLE stripes(
    root BLOB PRIMARY KEY, codec TEXT NOT NULL, k INTEGER NOT NULL, m INTEGER NOT NULL,
    chunk_id BLOB NOT NULL, size INTEGER NOT NULL, stored_size INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE live(root BLOB PRIMARY KEY) WITHOUT ROWID;
"""

KEYS_PER_TRANSACTION = 256
"""Scanned keys written to a table in one transaction, on a thread."""


@dataclass(frozen=True)
class Stripe:
    """One chunk's stripe as the manifests describe it."""

    ref: ChunkRef
    codec: str
    k: int
    m: int

    @property
    def n(self) -> int:
        """Shards in the stripe."""
        return self.k + self.m


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
        self.path = Path(self._dir.name) / "records.sqlite"
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path,
                                  check_same_thread=False, isolation_level=None)
        self.db.executescript(f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                              f"PRAGMA cache_size=-{CACHE_KIB}; PRAGMA temp_store=FILE;"
                              + _SCHEMA)

    def disk_bytes(self) -> int:
        """The database's size on disk, bytes."""
        pages: int = self.db.execute("PRAGMA page_count").fetchone()[0]
        size: int = self.db.execute("PRAGMA page_size").fetchone()[0]
        return pages * size

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
        if not newest.tombstone:
            self.db.executemany(
                "INSERT OR IGNORE INTO stripes VALUES (?,?,?,?,?,?,?)",
                [(ref.root, man.codec, man.k, man.m, ref.chunk_id, ref.size, ref.stored_size)
                 for ref in man.chunks])

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

    def index_needs(self) -> None:
        """Index ``needs`` by the needed key (once, after filling: one sort instead of
        a random insert per need)."""
        self.db.execute("CREATE INDEX IF NOT EXISTS needs_by_need ON needs(need, key)")

    def needs_of(self, key: str) -> list[str]:
        """The keys ``key`` needs, sorted."""
        return [n for (n,) in self.db.execute(
            "SELECT need FROM needs WHERE key = ? ORDER BY need", (key,))]

    def stripe_count(self) -> int:
        """Stripes of the live records."""
        got: int = self.db.execute("SELECT count(*) FROM stripes").fetchone()[0]
        return got

    def stripe_batches(self, batch: int) -> Iterator[list[Stripe]]:
        """The stripes of the live records, ``batch`` at a time, each batch of one
        erasure code (codec, k, m), in order of code, then root."""
        codes = self.db.execute("SELECT DISTINCT codec, k, m FROM stripes "
                                "ORDER BY codec, k, m").fetchall()
        for codec, k, m in codes:
            after = b""
            while rows := self.db.execute(
                    "SELECT root, chunk_id, size, stored_size FROM stripes WHERE codec = ? "
                    "AND k = ? AND m = ? AND root > ? ORDER BY root LIMIT ?",
                    (codec, k, m, after, batch)).fetchall():
                after = rows[-1][0]
                yield [Stripe(ChunkRef(chunk_id, root, size, stored_size), codec, k, m)
                       for root, chunk_id, size, stored_size in rows]

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
        """Whether the stripe ``root`` (32 bytes) is live (thread-safe)."""
        with self._lock:
            return self.db.execute("SELECT 1 FROM live WHERE root = ?",
                                   (root,)).fetchone() is not None


@contextmanager
def record_table(directory: str | Path | None = None) -> Iterator[RecordTable]:
    """A :class:`RecordTable` for the ``with`` block, closed and deleted after it.

    Raises:
        RecordTableError: the table could not be made (an unwritable directory), or
            SQLite failed inside the block (a full disk): one line saying where.
    """
    where = directory or tempfile.gettempdir()
    try:
        table = RecordTable(directory)
    except (OSError, sqlite3.Error) as exc:
        raise RecordTableError(f"cannot make the record table in {where}: {exc}") from None
    try:
        yield table
    except sqlite3.Error as exc:
        raise RecordTableError(f"the record table in {where} failed: {exc} (set TMPDIR to "
                               "a directory with room: about 2 KB a record)") from None
    finally:
        table.close()


@dataclass
class ScanOutcome:
    """What a :func:`scan_into` could not read.

    Attributes:
        trusted: the publisher keys records were verified under.
        unreachable: node id -> why its listing failed (keys only it holds were
            not seen).
        unopened: record key -> why no listed copy could be opened (the key is
            not in the table).
        copy_problems: why a listed copy of a key with another valid copy could
            not be read or opened, a line each (``record KEY on node ...``).
    """

    trusted: dict[str, PublisherKey]
    unreachable: dict[str, str] = field(default_factory=dict)
    unopened: dict[str, str] = field(default_factory=dict)
    copy_problems: list[str] = field(default_factory=list)


def _store(table: RecordTable, items: list[ScannedKey],
           each_live: Callable[[RecordTable, Record], None] | None) -> None:
    """Write scanned keys into ``table`` in one transaction, calling ``each_live`` with
    every live key's newest version."""
    table.begin()
    for item in items:
        top = item.newest
        if top is None:
            continue
        table.add(item.key, top, max(entry.atime for entry in item.listings.values()),
                  item.copies)
        if each_live is not None and not top.tombstone:
            each_live(table, top)
    table.commit()


async def scan_into(net: NetworkClient, table: RecordTable,
                    each_live: Callable[[RecordTable, Record], None] | None = None,
                    ) -> ScanOutcome:
    """Scan every record of the network (:class:`RecordScan`) into ``table``.

    Args:
        each_live: called on a worker thread with the table and each live key's
            newest version, as it is added (garbage collection notes its links).

    Never raises for a node: what could not be read is in the outcome.
    """
    scan = RecordScan(net)
    outcome = ScanOutcome(scan.trusted)
    batch: list[ScannedKey] = []
    async for item in scan:
        if item.newest is None:
            if item.problems:
                outcome.unopened[item.key] = "; ".join(item.problems)
            continue
        outcome.copy_problems.extend(f"record {item.key} on {why}" for why in item.problems)
        batch.append(item)
        if len(batch) >= KEYS_PER_TRANSACTION:
            await asyncio.to_thread(_store, table, batch, each_live)
            batch = []
    await asyncio.to_thread(_store, table, batch, each_live)
    outcome.unreachable = dict(scan.unreachable)
    return outcome

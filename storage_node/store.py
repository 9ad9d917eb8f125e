"""The on-disk store of one node: shards and records, written atomically.

:class:`Store` opens a data directory (layout:
:mod:`storage_node.store_layout`), locks it, clears ``tmp/`` and counts what
is stored; its shard half is :mod:`storage_node.shard_store`, its record
half :mod:`storage_node.record_store`, both built on the file primitives of
:mod:`storage_node.disk`.

Every object is written to a uniquely named file under ``tmp/``, fsync'd,
then moved into place (a hard link for shards, which are never rewritten
while they match their id; a rename for records, which may be replaced, and
for a shard whose stored bytes rotted) and the directory is fsync'd, so
a reader never sees a partial file and a crash leaves at worst a stray file
in ``tmp/`` (removed at the next start).

File times carry garbage-collection state (see :mod:`storage_network.upkeep.gc`):
a shard's mtime is when it was last written or touched
(:mod:`storage_node.shard_store`), a record's atime when a reader last
fetched it (:mod:`storage_node.record_store`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from .errors import DataDirError
from .record_store import RecordStore
from .shard_store import ShardStore
from .store_layout import FANOUT, StoreStats
from .usage import LEDGER_FILE, RECORD, SHARD, UsageLedger

log = logging.getLogger("nixshard.node")


class Store(ShardStore, RecordStore):
    """Shards and records in one data directory, with in-memory counters.

    Build one with :meth:`open`; call :meth:`close` when done (releases the
    directory lock).
    """

    @classmethod
    def open(cls, root: Path, quotas: Mapping[str, int] | None = None) -> Store:
        """Create the layout if needed, lock it, clear ``tmp/``, open the usage ledger
        (``quotas``: publisher key name -> bytes it may keep here, see
        :mod:`storage_node.usage`) and count what is stored.

        Raises:
            DataDirError: the directory cannot be created or read, another
                node process holds its lock, or the usage ledger cannot be opened.
        """
        store = cls(root)
        try:
            for d in (store.shards_dir, store.records_dir, store.tmp_dir):
                d.mkdir(parents=True, exist_ok=True)
            for sub in FANOUT:
                (store.shards_dir / sub).mkdir(exist_ok=True)
            store._lock()
            store._clear_tmp()
            store.usage = UsageLedger(root / LEDGER_FILE, quotas or {})
            store._count()
        except sqlite3.Error as exc:
            store.close()
            raise DataDirError(f"data dir {root}: usage ledger {LEDGER_FILE}: {exc}") from exc
        except OSError as exc:
            store.close()
            raise DataDirError(f"data dir {root}: {exc.strerror or exc}") from exc
        except DataDirError:
            store.close()
            raise
        return store

    def _lock(self) -> None:
        path = self.root / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise DataDirError(
                f"data dir {self.root} is in use by another node process (lock {path})") from exc
        self._lock_fd = fd

    def _clear_tmp(self) -> None:
        for entry in os.scandir(self.tmp_dir):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                log.info("removed leftover temporary file %s", entry.path)

    def _count(self) -> None:
        """Count what is stored and reconcile the usage ledger with it
        (:meth:`~storage_node.usage.UsageLedger.reconcile`)."""
        stats = StoreStats()
        shard_ids = set()
        for fanout in range(len(FANOUT)):
            for shard in self.list_shard_dir(fanout):
                stats.shards += 1
                stats.shard_bytes += shard.size
                shard_ids.add(shard.id)
        record_keys = {record.key for record in self.list_records()}
        stats.records = len(record_keys)
        self.stats = stats
        for kind, present in ((SHARD, shard_ids), (RECORD, record_keys)):
            dropped = self.usage.reconcile(kind, present)
            if dropped:
                log.warning("usage ledger: %d %s rows named objects no longer stored; dropped",
                            dropped, kind)

    def close(self) -> None:
        """Close the usage ledger and release the data-directory lock (idempotent)."""
        if getattr(self, "usage", None) is not None:
            self.usage.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

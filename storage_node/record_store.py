"""The record half of a node's store: records written atomically, their reads counted.

A record write is decided and done under one lock per store
(:meth:`RecordStore.write_record`), so two writers of one key cannot both act
on what they read before the other wrote.

A record's atime is when a reader last fetched it (:meth:`RecordStore.read_record`
sets it, at most once a minute; records are read with ``O_NOATIME`` so the
kernel's own atime updates do not count reads that asked not to be counted).
:meth:`RecordStore.delete_record` deletes a record only if its bytes are the
ones the collector judged, under the lock record writes take.

A record written with a :class:`~storage_node.usage.Reservation` is charged
to its publisher under the record lock, the bytes it replaced refunded to
their payer; a deleted record refunds its payer (:mod:`storage_node.usage`).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from storage_network.wire.listing import ListedRecord
from storage_network.wire.record import RECORD_KEY_RE

from .disk import fsync_dir, open_noatime, place, scan_dir
from .store_layout import Deletion, StoreLayout
from .usage import RECORD, Reservation

# A record read moves its atime forward only when the stored one is older than this.
ATIME_RESOLUTION_SECONDS = 60.0


class RecordWrite(enum.Enum):
    """What a record write did."""

    CREATED = "created"    # nothing was held under the key
    REPLACED = "replaced"  # the held version was replaced
    KEPT = "kept"          # the decision kept what is held (e.g. the same bytes)


class RecordStore(StoreLayout):
    """Records under ``records/``: write (decided under the lock), read, delete, list."""

    async def write_record(self, key: str, data: bytes | memoryview,
                           decide: Callable[[bytes | None], bool] | None = None,
                           payer: Reservation | None = None) -> RecordWrite:
        """Store record ``key`` atomically (temp file, fsync, rename, fsync directory).

        Args:
            decide: called (on a worker thread) with the bytes held under
                ``key`` (None when nothing is), under the record lock, so that
                no other write of a record lands between the decision and the
                rename; returns True to write ``data``, False to keep what is
                held, or raises to refuse (the exception propagates and
                nothing is written).  None: always write.
            payer: the written bytes are charged to its publisher (and it is
                released); None: charged to nobody.  Either way the bytes
                replaced are refunded to their payer.

        Raises:
            OSError: the disk refused (full, read-only, ...).
            Exception: whatever ``decide`` raises.
        """
        final = self.record_path(key)
        outcome = await asyncio.to_thread(self._write_record_sync, data, final, decide, payer)
        if outcome is RecordWrite.CREATED:
            self.stats.records += 1
        return outcome

    def _write_record_sync(self, data: bytes | memoryview, final: Path,
                           decide: Callable[[bytes | None], bool] | None,
                           payer: Reservation | None) -> RecordWrite:
        with self.new_temp() as temp:
            temp.write(data)
            temp.sync_close()  # before the lock: other keys' writes do not wait on it
            with self._record_lock:
                if decide is not None and not decide(self._read_held_record(final)):
                    return RecordWrite.KEPT
                created = place(temp.path, final, replace=True)
                temp.committed = True
                if payer is not None:
                    self.usage.replace(RECORD, final.name, len(data), payer.publisher, payer)
                else:
                    self.usage.refund(RECORD, final.name)
        fsync_dir(final.parent)
        return RecordWrite.CREATED if created else RecordWrite.REPLACED

    @staticmethod
    def _read_held_record(final: Path) -> bytes | None:
        """The bytes of record file ``final`` without touching its atime; None if absent."""
        try:
            fd = open_noatime(final)
        except FileNotFoundError:
            return None
        try:
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read()
        finally:
            os.close(fd)

    async def read_record(self, key: str, count_access: bool = True) -> bytes | None:
        """The bytes of record ``key``, or None when absent.

        Args:
            count_access: set the record's atime to now (when it is more than
                :data:`ATIME_RESOLUTION_SECONDS` old), so listings report
                this read; False for reads that are not a use (audit, gc).
        """
        return await asyncio.to_thread(self._read_record_sync, self.record_path(key),
                                       count_access)

    async def read_records(self, keys: list[str]) -> list[bytes | None]:
        """The bytes of each record of ``keys`` in order (None: absent), read on one
        worker thread; a maintenance read: no atime moves."""
        return await asyncio.to_thread(
            lambda: [self._read_record_sync(self.record_path(key), False) for key in keys])

    @staticmethod
    def _read_record_sync(path: Path, count_access: bool) -> bytes | None:
        try:
            fd = open_noatime(path)
        except FileNotFoundError:
            return None
        try:
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read()
            if count_access:
                st = os.fstat(fd)
                now = time.time()
                if now - st.st_atime >= ATIME_RESOLUTION_SECONDS:
                    # by descriptor: a record replaced meanwhile keeps its own times
                    os.utime(fd, (now, st.st_mtime))
        finally:
            os.close(fd)
        return data

    async def delete_record(self, key: str, sha256: bytes) -> Deletion:
        """Delete record ``key`` if its stored bytes have SHA-256 ``sha256`` (32 bytes).

        Returns:
            DELETED; ABSENT; or KEPT when the stored bytes differ (replaced).

        Raises:
            OSError: the disk refused.
        """
        final = self.record_path(key)
        outcome = await asyncio.to_thread(self._delete_record_sync, final, sha256)
        if outcome is Deletion.DELETED:
            self.stats.records -= 1
        return outcome

    def _delete_record_sync(self, final: Path, sha256: bytes) -> Deletion:
        with self._record_lock:
            try:
                fd = open_noatime(final)
            except FileNotFoundError:
                return Deletion.ABSENT
            try:
                digest = hashlib.sha256()
                while piece := os.read(fd, 1 << 20):
                    digest.update(piece)
            finally:
                os.close(fd)
            if digest.digest() != sha256:
                return Deletion.KEPT
            os.unlink(final)
            self.usage.refund(RECORD, final.name)
        fsync_dir(final.parent)
        return Deletion.DELETED

    def list_records(self, after: str = "", limit: int | None = None) -> list[ListedRecord]:
        """The stored records whose keys sort after ``after``, sorted by key, at most
        ``limit`` (None: all).  Blocking: call it from a thread."""
        return [ListedRecord(name, st.st_size, st.st_mtime, st.st_atime)
                for name, st in scan_dir(self.records_dir, RECORD_KEY_RE, after, limit)]

"""The on-disk store of one node: shards and records, written atomically.

Layout under the data directory::

    shards/<first 2 hex of the root>/<root hex>.<index>
    records/<record key>
    tmp/<random>.part          bodies being received; never read
    lock                       flock'd while a node runs on this directory

Every object is written to a uniquely named file under ``tmp/``, fsync'd,
then moved into place (a hard link for shards, which are never rewritten
while they match their id; a rename for records, which may be replaced, and
for a shard whose stored bytes rotted) and the directory is fsync'd, so
a reader never sees a partial file and a crash leaves at worst a stray file
in ``tmp/`` (removed at the next start).

A write of a shard already held checks the stored bytes against the id
(:func:`storage_network.wire.stripe.verify_shard`): bytes that still match are
kept, bytes that no longer do (disk rot, tampering) are replaced by the
incoming ones, which the caller has checked (this is how repair heals
corruption; counted in :attr:`StoreStats.healed`).  A record write is
decided and done under one lock per store (:meth:`Store.write_record`), so
two writers of one key cannot both act on what they read before the other
wrote.

Names are validated against :data:`storage_network.wire.stripe.SHARD_ID_RE` and
:data:`RECORD_KEY_RE` before any path is built, so no request can name a
file outside the data directory.

File times carry garbage-collection state (see :mod:`storage_network.upkeep.gc`):

- a shard's mtime is when it was last written or touched: a PUT of a shard
  already held and a signed ``has`` with ``touch`` set it to now, so a
  collector never deletes a shard a push is about to reference;
  :meth:`Store.delete_shard` deletes only shards older than the collector's
  cut-off, and the check and the unlink happen under the lock that touches
  and PUTs take, so neither can slip in between;
- a record's atime is when a reader last fetched it (:meth:`Store.read_record`
  sets it, at most once a minute; records are read with ``O_NOATIME`` so
  the kernel's own atime updates do not count reads that asked not to be
  counted).  :meth:`Store.delete_record` deletes a record only if its bytes
  are the ones the collector judged, under the lock record writes take.
"""

from __future__ import annotations

import asyncio
import ctypes
import enum
import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from storage_network.errors import ShardProofError
from storage_network.wire.listing import ListedRecord, ListedShard
from storage_network.wire.stripe import SHARD_ID_RE, parse_shard_id, verify_shard

from .errors import DataDirError

log = logging.getLogger("nixshard.node")

RECORD_KEY_RE = re.compile(r"\A[0-9a-z]{32}\Z")
_FANOUT = [f"{i:02x}" for i in range(256)]
# Filesystems that cannot hard-link: fall back to check-then-rename.
_NO_LINK_ERRNOS = {errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}
# A record read moves its atime forward only when the stored one is older than this.
ATIME_RESOLUTION_SECONDS = 60.0


class Deletion(enum.Enum):
    """What a conditional delete did."""

    DELETED = "deleted"
    ABSENT = "absent"
    KEPT = "kept"  # the precondition failed: shard touched since, or record replaced


@dataclass
class StoreStats:
    """Counters kept in memory: shard count, total shard bytes, record count, and shards
    healed (replaced because their stored bytes no longer matched their id) since start."""

    shards: int = 0
    shard_bytes: int = 0
    records: int = 0
    healed: int = 0


class ShardWrite(enum.Enum):
    """What a shard write did."""

    NEW = "new"          # the shard was not held
    HELD = "held"        # held and still matching its id: kept, mtime set to now
    HEALED = "healed"    # held but no longer matching its id: replaced


class RecordWrite(enum.Enum):
    """What a record write did."""

    CREATED = "created"    # nothing was held under the key
    REPLACED = "replaced"  # the held version was replaced
    KEPT = "kept"          # the decision kept what is held (e.g. the same bytes)


def _stored_shard_matches(final: Path, shard_id: str) -> bool:
    """True if the file ``final`` still holds a shard matching ``shard_id`` (blocking).

    False when it does not verify or vanished meanwhile.
    """
    root, index = parse_shard_id(shard_id)
    try:
        data = final.read_bytes()
    except FileNotFoundError:
        return False
    try:
        verify_shard(root, index, memoryview(data))
    except ShardProofError:
        return False
    return True


def _size_or_none(path: Path) -> int | None:
    try:
        return os.stat(path, follow_symlinks=False).st_size
    except FileNotFoundError:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return fn


_SYNCFS = _load_syncfs()


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page and inode of the filesystem holding ``path`` (``syncfs(2)``).

    One call makes a whole batch of new files and their directory entries
    durable, where one ``fsync`` per file and directory costs a journal
    commit each (0.34 ms per shard measured here, against 0.07 ms per shard
    for one ``syncfs`` per 20).  Where ``syncfs`` is missing, ``sync(2)``.

    Raises:
        OSError: the kernel reported a write-back error.
    """
    if _SYNCFS is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _open_noatime(path: Path) -> int:
    """Open ``path`` read-only without updating its atime where the kernel allows it."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOATIME)
    except PermissionError:  # O_NOATIME needs the file's owner: fall back
        return os.open(path, os.O_RDONLY)


def _place(tmp: Path, final: Path, replace: bool) -> bool:
    """Move ``tmp`` to ``final`` atomically; return True if ``final`` is new.

    With ``replace=False`` an existing ``final`` is kept and ``tmp`` dropped
    (so concurrent writers of one shard id never rewrite it).
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        if replace:
            os.replace(tmp, final)
        else:
            os.unlink(tmp)
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
        existed = final.exists()
        if existed and not replace:
            os.unlink(tmp)
            return False
        os.replace(tmp, final)
        return not existed
    os.unlink(tmp)
    return True


class TempFile:
    """A uniquely named file under ``tmp/`` being written.

    Use it as a context manager: unless :meth:`Store.commit_shard` consumed
    it, leaving the ``with`` block closes and deletes it (client gone, bad
    signature, bad proof: nothing is left behind).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self.committed = False
        self._fh: IO[bytes] | None = open(path, "xb")  # closed by discard() or sync_close()

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (buffered; made durable by the commit)."""
        assert self._fh is not None, "write after close"
        self._fh.write(data)
        self.size += len(data)

    def sync_close(self) -> None:
        """Flush, fsync and close the file (blocking: call it from a thread)."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        self.close()

    def close(self) -> None:
        """Flush and close the file without fsync (a batch syncs the filesystem once)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def discard(self) -> None:
        """Close and delete the file unless it was committed; never raises."""
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
        if not self.committed:
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                log.error("cannot delete temporary file %s: %s", self.path, exc)

    def __enter__(self) -> TempFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard()


class Store:
    """Shards and records in one data directory, with in-memory counters.

    Build one with :meth:`open`; call :meth:`close` when done (releases the
    directory lock).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shards_dir = root / "shards"
        self.records_dir = root / "records"
        self.tmp_dir = root / "tmp"
        self.stats = StoreStats()
        self._lock_fd: int | None = None
        # Held (on worker threads) around every check-then-act on shard and
        # record files: placing, touching and conditional deletes.
        self._shard_lock = threading.Lock()
        self._record_lock = threading.Lock()

    @classmethod
    def open(cls, root: Path) -> Store:
        """Create the layout if needed, lock it, clear ``tmp/`` and count what is stored.

        Raises:
            DataDirError: the directory cannot be created or read, or another
                node process holds its lock.
        """
        store = cls(root)
        try:
            for d in (store.shards_dir, store.records_dir, store.tmp_dir):
                d.mkdir(parents=True, exist_ok=True)
            for sub in _FANOUT:
                (store.shards_dir / sub).mkdir(exist_ok=True)
            store._lock()
            store._clear_tmp()
            store._count()
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
        stats = StoreStats()
        for fanout in range(len(_FANOUT)):
            for shard in self.list_shard_dir(fanout):
                stats.shards += 1
                stats.shard_bytes += shard.size
        stats.records = len(self.list_records())
        self.stats = stats

    def close(self) -> None:
        """Release the data-directory lock (idempotent)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def shard_path(self, shard_id: str) -> Path:
        """Where shard ``shard_id`` lives (whether or not it exists).

        Raises:
            ValueError: ``shard_id`` does not match ``SHARD_ID_RE`` (callers
                validate first; this is the last line of defence for paths).
        """
        if not SHARD_ID_RE.fullmatch(shard_id):
            raise ValueError(f"not a shard id: {shard_id[:80]!r}")
        return self.shards_dir / shard_id[:2] / shard_id

    def record_path(self, key: str) -> Path:
        """Where record ``key`` lives (whether or not it exists).

        Raises:
            ValueError: ``key`` does not match :data:`RECORD_KEY_RE`.
        """
        if not RECORD_KEY_RE.fullmatch(key):
            raise ValueError(f"not a record key: {key[:80]!r}")
        return self.records_dir / key

    def new_temp(self) -> TempFile:
        """A fresh, uniquely named :class:`TempFile` under ``tmp/``."""
        return TempFile(self.tmp_dir / f"{secrets.token_hex(12)}.part")

    def free_bytes(self) -> int:
        """Bytes free on the data directory's filesystem (for unprivileged users)."""
        return shutil.disk_usage(self.root).free

    def _count_shard_write(self, shard_id: str, outcome: ShardWrite, size: int,
                           old_size: int) -> None:
        if outcome is ShardWrite.NEW:
            self.stats.shards += 1
            self.stats.shard_bytes += size
        elif outcome is ShardWrite.HEALED:
            self.stats.healed += 1
            self.stats.shard_bytes += size - old_size
            log.warning("shard %s no longer matched its id (%d bytes stored); replaced by "
                        "the %d bytes just written", shard_id, old_size, size)

    async def commit_shard(self, temp: TempFile, shard_id: str) -> ShardWrite:
        """Make ``temp`` (bytes already checked against ``shard_id``) shard ``shard_id``:
        fsync, link into place, fsync the directory.

        A stored shard that still matches its id is kept as it is (shards are
        immutable), ``temp`` is dropped and the shard's mtime set to now (a
        push reusing it keeps it from garbage collection).  A stored shard
        that no longer matches is replaced by ``temp`` atomically (logged as
        a warning, counted in :attr:`StoreStats.healed`).

        Raises:
            OSError: the disk refused (full, read-only, ...).
        """
        final = self.shard_path(shard_id)
        outcome, old_size = await asyncio.to_thread(self._commit_shard_sync, temp, shard_id,
                                                    final)
        self._count_shard_write(shard_id, outcome, temp.size, old_size)
        return outcome

    def _touch_if_present(self, final: Path) -> bool:
        """Set ``final``'s mtime to now if it exists (caller holds the shard lock)."""
        try:
            os.utime(final)
        except FileNotFoundError:
            return False
        return True

    def _heal_sync(self, temp: TempFile, final: Path) -> tuple[ShardWrite, int]:
        """Put ``temp`` in place of a stored shard that no longer matched its id."""
        with self._shard_lock:
            old_size = _size_or_none(final)
            os.replace(temp.path, final)
            temp.committed = True
        return (ShardWrite.NEW, 0) if old_size is None else (ShardWrite.HEALED, old_size)

    def _commit_shard_sync(self, temp: TempFile, shard_id: str,
                           final: Path) -> tuple[ShardWrite, int]:
        with self._shard_lock:
            present = self._touch_if_present(final)
        if present:
            if _stored_shard_matches(final, shard_id):  # common on re-uploads: no fsync
                temp.discard()
                return ShardWrite.HELD, 0
            temp.sync_close()
            outcome = self._heal_sync(temp, final)
            _fsync_dir(final.parent)
            return outcome
        temp.sync_close()
        with self._shard_lock:
            created = _place(temp.path, final, replace=False)
            temp.committed = True
            if not created:
                self._touch_if_present(final)
        if created:
            _fsync_dir(final.parent)
        return (ShardWrite.NEW if created else ShardWrite.HELD), 0

    async def commit_shards(self, shards: Sequence[tuple[str, bytes | memoryview]]
                            ) -> list[ShardWrite]:
        """Store a batch of checked shards: all written, then made durable together.

        Every new shard is written to its own temp file, one
        :func:`sync_filesystem` makes them durable, each is linked into place
        (a reader never sees a partial shard), and a second one makes the
        links durable before this returns.  A shard already stored is kept
        and its mtime set to now, or replaced when its stored bytes no longer
        match its id, as :meth:`commit_shard` does.

        Returns:
            Per shard, in order, what was done.

        Raises:
            OSError: the disk refused (full, read-only, ...); temp files are
                removed and shards linked before the failure stay (each is
                complete and matches its id).
        """
        done = await asyncio.to_thread(self._commit_shards_sync, shards)
        for (sid, body), (outcome, old_size) in zip(shards, done, strict=True):
            self._count_shard_write(sid, outcome, len(body), old_size)
        return [outcome for outcome, _ in done]

    def _commit_shards_sync(self, shards: Sequence[tuple[str, bytes | memoryview]]
                            ) -> list[tuple[ShardWrite, int]]:
        done = [(ShardWrite.HELD, 0)] * len(shards)
        temps: list[tuple[int, TempFile, Path, bool]] = []  # (number, temp, final, heal)
        try:
            for number, (sid, body) in enumerate(shards):
                final = self.shard_path(sid)
                with self._shard_lock:
                    present = self._touch_if_present(final)
                if present and _stored_shard_matches(final, sid):
                    continue
                temp = self.new_temp()
                temps.append((number, temp, final, present))
                temp.write(body)
                temp.close()
            if not temps:
                return done
            sync_filesystem(self.tmp_dir)
            for number, temp, final, heal in temps:
                if heal:
                    done[number] = self._heal_sync(temp, final)
                    continue
                with self._shard_lock:
                    created = _place(temp.path, final, replace=False)
                    temp.committed = True
                    if not created:
                        self._touch_if_present(final)
                done[number] = (ShardWrite.NEW if created else ShardWrite.HELD, 0)
            sync_filesystem(self.tmp_dir)
        finally:
            for _, temp, _, _ in temps:
                temp.discard()
        return done

    def read_shards(self, shard_ids: Iterable[str]) -> list[bytes | None]:
        """The stored bodies of ``shard_ids`` (validated), None where not stored.

        Blocking: call it from a thread.
        """
        bodies: list[bytes | None] = []
        for sid in shard_ids:
            try:
                with open(self.shard_path(sid), "rb") as f:
                    bodies.append(f.read())
            except FileNotFoundError:
                bodies.append(None)
        return bodies

    async def touch_shards(self, shard_ids: Iterable[str]) -> list[str]:
        """Set the mtime of the stored ones of ``shard_ids`` (validated) to now.

        Returns:
            The stored ones, in order.
        """
        paths = [(i, self.shard_path(i)) for i in shard_ids]

        def touch() -> list[str]:
            with self._shard_lock:
                return [i for i, path in paths if self._touch_if_present(path)]

        return await asyncio.to_thread(touch)

    async def delete_shard(self, shard_id: str, before: float) -> Deletion:
        """Delete shard ``shard_id`` if its mtime is earlier than ``before`` (unix seconds).

        Returns:
            DELETED; ABSENT; or KEPT when it was written or touched at or after ``before``.

        Raises:
            OSError: the disk refused.
        """
        final = self.shard_path(shard_id)
        outcome, size = await asyncio.to_thread(self._delete_shard_sync, final, before)
        if outcome is Deletion.DELETED:
            self.stats.shards -= 1
            self.stats.shard_bytes -= size
        return outcome

    def _delete_shard_sync(self, final: Path, before: float) -> tuple[Deletion, int]:
        with self._shard_lock:
            try:
                st = os.stat(final, follow_symlinks=False)
            except FileNotFoundError:
                return Deletion.ABSENT, 0
            if st.st_mtime >= before:
                return Deletion.KEPT, 0
            os.unlink(final)
        _fsync_dir(final.parent)
        return Deletion.DELETED, st.st_size

    async def write_record(self, key: str, data: bytes | memoryview,
                           decide: Callable[[bytes | None], bool] | None = None) -> RecordWrite:
        """Store record ``key`` atomically (temp file, fsync, rename, fsync directory).

        Args:
            decide: called (on a worker thread) with the bytes held under
                ``key`` (None when nothing is), under the record lock, so that
                no other write of a record lands between the decision and the
                rename; returns True to write ``data``, False to keep what is
                held, or raises to refuse (the exception propagates and
                nothing is written).  None: always write.

        Raises:
            OSError: the disk refused (full, read-only, ...).
            Exception: whatever ``decide`` raises.
        """
        final = self.record_path(key)
        outcome = await asyncio.to_thread(self._write_record_sync, data, final, decide)
        if outcome is RecordWrite.CREATED:
            self.stats.records += 1
        return outcome

    def _write_record_sync(self, data: bytes | memoryview, final: Path,
                           decide: Callable[[bytes | None], bool] | None) -> RecordWrite:
        with self.new_temp() as temp:
            temp.write(data)
            temp.sync_close()  # before the lock: other keys' writes do not wait on it
            with self._record_lock:
                if decide is not None and not decide(self._read_held_record(final)):
                    return RecordWrite.KEPT
                created = _place(temp.path, final, replace=True)
                temp.committed = True
        _fsync_dir(final.parent)
        return RecordWrite.CREATED if created else RecordWrite.REPLACED

    @staticmethod
    def _read_held_record(final: Path) -> bytes | None:
        """The bytes of record file ``final`` without touching its atime; None if absent."""
        try:
            fd = _open_noatime(final)
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

    @staticmethod
    def _read_record_sync(path: Path, count_access: bool) -> bytes | None:
        try:
            fd = _open_noatime(path)
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
                fd = _open_noatime(final)
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
        _fsync_dir(final.parent)
        return Deletion.DELETED

    async def present_shards(self, shard_ids: Iterable[str]) -> list[str]:
        """The subset of ``shard_ids`` (already validated) that is stored, in order."""
        ids = list(shard_ids)
        return await asyncio.to_thread(
            lambda: [i for i in ids if self.shard_path(i).is_file()])

    def list_shard_dir(self, fanout: int) -> list[ListedShard]:
        """The shards under fan-out directory ``fanout`` (0-255), sorted by id.

        Blocking (scandir + stat): call it from a thread.
        """
        return [ListedShard(name, st.st_size, st.st_mtime)
                for name, st in _scan_dir(self.shards_dir / _FANOUT[fanout], SHARD_ID_RE)]

    def list_records(self) -> list[ListedRecord]:
        """Every stored record, sorted by key (blocking: call it from a thread)."""
        return [ListedRecord(name, st.st_size, st.st_mtime, st.st_atime)
                for name, st in _scan_dir(self.records_dir, RECORD_KEY_RE)]


def _scan_dir(directory: Path, name_re: re.Pattern[str]) -> list[tuple[str, os.stat_result]]:
    """``(name, stat)`` of the regular files in ``directory`` whose names match,
    sorted by name; files that vanish while listed are skipped."""
    found = []
    for entry in os.scandir(directory):
        if name_re.fullmatch(entry.name):
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((entry.name, st))
    return sorted(found, key=lambda pair: pair[0])

"""File primitives of the node's store: atomic placement, durability, listing.

Every object is written to a uniquely named :class:`TempFile` under ``tmp/``,
fsync'd (or made durable a batch at a time with :func:`sync_filesystem`),
then moved into place with :func:`place` (a hard link where the filesystem
allows it, else check-then-rename) and its directory fsync'd
(:func:`fsync_dir`), so a reader never sees a partial file.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

log = logging.getLogger("nixshard.node")

# Filesystems that cannot hard-link: fall back to check-then-rename.
_NO_LINK_ERRNOS = {errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def size_or_none(path: Path) -> int | None:
    """The size of the file ``path`` (symlinks not followed), None when it is absent."""
    try:
        return os.stat(path, follow_symlinks=False).st_size
    except FileNotFoundError:
        return None


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` durable (``fsync`` on the directory)."""
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


def open_noatime(path: Path) -> int:
    """Open ``path`` read-only without updating its atime where the kernel allows it."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOATIME)
    except PermissionError:  # O_NOATIME needs the file's owner: fall back
        return os.open(path, os.O_RDONLY)


def place(tmp: Path, final: Path, replace: bool) -> bool:
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

    Use it as a context manager: unless
    :meth:`~storage_node.shard_store.ShardStore.commit_shard` consumed it,
    leaving the ``with`` block closes and deletes it (client gone, bad
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


def scan_dir(directory: Path, name_re: re.Pattern[str], after: str = "",
             limit: int | None = None) -> list[tuple[str, os.stat_result]]:
    """``(name, stat)`` of the regular files in ``directory`` whose names match and sort
    after ``after``, sorted by name, at most ``limit`` (None: all); files that vanish
    while listed are skipped.  Only the files returned are stat'ed, so a page from
    the middle of a large directory costs its names, not a stat of every file.
    """
    with os.scandir(directory) as entries:
        names = sorted(entry.name for entry in entries
                       if entry.name > after and name_re.fullmatch(entry.name))
    found: list[tuple[str, os.stat_result]] = []
    for name in names:
        if limit is not None and len(found) >= limit:
            break
        try:
            st = os.stat(directory / name, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((name, st))
    return found

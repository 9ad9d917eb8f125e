"""Fills of the local NAR cache: one process writes a cold NAR's part file, and every
request, in whatever process, follows the growing file from its own offset.

The cache itself (layout, free space, eviction) is :mod:`cache_server.nar_cache`;
this module is what a fill is once started (how it writes the part file,
how readers follow it), and the per-key ``flock`` helpers both modules use.

A cold NAR is fetched from the network once however many requests ask for
it, in however many processes: the request that takes the key's lock
(``flock``, exclusive, without waiting; :func:`try_lock`) starts a
:class:`Fill` that writes the part file and renames it into ``nar/`` once
complete; every request (the first included) follows the growing file from
its own offset, so a ``Range`` request on a cold NAR waits only for the
bytes it asked for.  In the filling process readers follow the
:class:`Fill` (woken as each piece lands); in the others a
:class:`PeerFill` polls the part file's size every :data:`POLL` seconds.
The kernel drops the lock of a process that dies: its followers then see
the lock free (:func:`held`) and the part short, and continue from the
network at their own offset; a part is renamed only when whole, so ``nar/``
never holds a partial file, and a dead writer's part is removed by the next
fill of that key or at start-up (removals hold the key's lock, so no live
fill is touched).

When the disk fails during a fill (ENOSPC, EIO, ...), the fill stops and
every reader following it continues from the network at its own offset (the
``resume`` it gave :meth:`Fill.read`); only a network failure fails the
readers.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from storage_network import ChunkUnavailableError

log = logging.getLogger("nixshard.serve")
READ_PIECE = 1 << 20  # bytes a reader reads from the file at most at once
WRITE_PIECE = 1 << 20  # frames are written to the file in pieces of at least this
POLL = 0.01
"""Seconds between two looks at a fill written by another process (size, liveness)."""

Resume = Callable[[int, int], AsyncIterator[bytes]]
"""``resume(start, end)``: bytes ``[start, end)`` of the NAR from the network."""
Frames = AsyncIterator[bytes]
"""The NAR's zstd frames as the network rebuilds them, in order."""


class FillFailedError(ChunkUnavailableError):
    """The network fetch behind a fill failed after the file was started."""


class Fill:
    """One NAR this process writes to the cache; readers follow it as it grows.

    Made by :meth:`cache_server.nar_cache.NarCache.open` with the key's lock
    held; :meth:`run` (its task) writes the part file ``tmp``, which the cache
    renames to ``final`` once ``size`` bytes are in.

    Attributes:
        key: the cache key; size: bytes the file will have; written: bytes
            written so far; error: why the fill stopped (None while it runs
            or once done); disk_failed: it stopped because the local disk
            failed (readers then continue from the network); done: the file
            is complete at ``final``; task: the task writing it; lock: the
            key's lock as (descriptor, lock file path) while held; ident:
            (st_dev, st_ino) of the part file, once made.
    """

    def __init__(self, key: str, size: int, tmp: Path, final: Path):
        self.key, self.size, self.tmp, self.final = key, size, tmp, final
        self.written = 0
        self.error: BaseException | None = None
        self.disk_failed = False
        self.done = False
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.lock: tuple[int, Path] | None = None  # the key's lock: (fd, path)
        self.ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the part file

    def notify(self) -> None:
        """Wake the readers waiting for more bytes (call after ``written``, ``error`` or
        ``done`` changed)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _open(self) -> int | None:
        """A descriptor of the file (the part, or the final file once done); None when
        the fill failed and removed it."""
        if not self.done:
            try:
                fd = os.open(self.tmp, os.O_RDONLY)
            except FileNotFoundError:  # completed (renamed) meanwhile, or failed
                pass
            else:
                if file_identity(os.fstat(fd)) == self.ident:
                    return fd
                os.close(fd)  # another fill's part at the same name: ours is gone
        if self.done:
            return os.open(self.final, os.O_RDONLY)
        return None

    async def read(self, start: int, end: int,
                   resume: Resume | None = None) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of the file, as soon as they are written.

        When the local disk fails (the fill's write, or this reader's own
        read of the file), the rest comes from ``resume(pos, end)``, ``pos``
        being the first byte this reader has not yielded yet.

        Raises:
            FillFailedError: the network fetch behind the fill failed before
                reaching ``end`` (or the disk failed and no ``resume`` was given).
        """
        loop = asyncio.get_running_loop()
        pos = start
        fd: int | None = None
        try:
            fd = await loop.run_in_executor(None, self._open)
            if fd is None and not self.disk_failed:
                raise FillFailedError(f"NAR fetch failed: {self.error}")
            while pos < end and fd is not None:
                if self.error is not None:
                    if not self.disk_failed:
                        raise FillFailedError(f"NAR fetch failed: {self.error}")
                    break
                if self.written <= pos:
                    await self._changed.wait()
                    continue
                piece = await read_piece(self.key, self.tmp, fd, pos,
                                         min(end, self.written, pos + READ_PIECE) - pos)
                if piece is None:
                    break
                pos += len(piece)
                yield piece
        finally:
            if fd is not None:
                os.close(fd)
        if pos < end:  # the local disk failed: the network gives the rest
            if resume is None:
                raise FillFailedError(f"NAR {self.key}: the local disk failed: {self.error}")
            async for piece in resume(pos, end):
                yield piece

    async def run(self, frames: Frames, complete: Callable[[], None],
                  finished: Callable[[], object]) -> None:
        """Write ``frames`` to the part file ``tmp`` (in pieces of at least
        :data:`WRITE_PIECE` bytes, readers woken after each), then call
        ``complete()``, which renames it to ``final``.  The fill's task.

        Whatever happens, at the end: the key's lock is released, ``finished()``
        is called (the owner forgets the fill), ``frames`` is closed and the
        readers are woken.  A failure (the network's, or an ``OSError`` of the
        local disk: ``disk_failed``) is not raised but kept in ``error``, and
        the part file is removed.

        Raises:
            asyncio.CancelledError: the task was cancelled (the part file is removed).
        """
        loop = asyncio.get_running_loop()
        try:
            with open(self.tmp, "wb", buffering=0) as f:
                pending: list[bytes] = []

                async def flush() -> None:
                    piece = b"".join(pending)
                    pending.clear()
                    await loop.run_in_executor(None, f.write, piece)
                    self.written += len(piece)
                    self.notify()

                async for frame in frames:
                    pending.append(frame)
                    if sum(map(len, pending)) >= WRITE_PIECE:
                        await flush()
                await flush()
            if self.written != self.size:
                raise FillFailedError(f"rebuilt {self.written} bytes, manifest says {self.size}")
            complete()
        except asyncio.CancelledError as exc:
            self.error = exc
            self.tmp.unlink(missing_ok=True)
            raise
        except Exception as exc:  # noqa: BLE001 - every reader is told through self.error
            # the network's failures are StorageNetworkErrors; an OSError is the local disk's
            self.disk_failed = isinstance(exc, OSError)
            self.error = exc
            self.done = False
            self.tmp.unlink(missing_ok=True)
            if self.disk_failed:
                log.warning("NAR %s: the cache disk failed after %d bytes (%s); its readers "
                            "continue from the network", self.key, self.written, exc)
            else:
                log.error("NAR %s: fill failed: %s", self.key, exc)
        finally:
            self.release_lock()
            finished()
            await close_frames(frames)
            self.notify()

    def release_lock(self) -> None:
        """Release the key's lock (removing its lock file); does nothing once released.

        Raises:
            OSError: the lock file cannot be removed (the lock is released anyway).
        """
        if self.lock is not None:
            fd, path = self.lock
            self.lock = None
            unlock(fd, path)


class PeerFill:
    """One NAR another process is writing to the cache: its part file, followed as it
    grows (polled every :data:`POLL` seconds).

    Made by :meth:`cache_server.nar_cache.NarCache.open` with the part file open (``fd``, closed by
    :meth:`read` or when the object goes away).  ``part``, ``final``, ``lock``:
    the part file's name, the name it gets when complete, the key's lock file.
    """

    def __init__(self, key: str, size: int, fd: int, part: Path, final: Path, lock: Path):
        self.key, self.size, self.part, self.final, self.lock = key, size, part, final, lock
        self._fd = fd
        self._close = weakref.finalize(self, os.close, fd)

    def _writer_gone(self) -> bool:
        """True when nobody will write more of this file: its writer stopped (died, or
        failed and removed it) before it was complete."""
        st = os.fstat(self._fd)
        if is_file(self.final, st):
            return False  # complete and renamed: every byte is in it
        return not (is_file(self.part, st) and held(self.lock))

    async def read(self, start: int, end: int,
                   resume: Resume | None = None) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of the file, as soon as the other process wrote them.

        When that process stops before writing them (it died, or its fetch or
        disk failed), or this reader's read fails, the rest comes from
        ``resume(pos, end)``, ``pos`` being the first byte not yielded yet.

        Raises:
            FillFailedError: the writer stopped short and no ``resume`` was given.
        """
        pos = start
        try:
            while pos < end:
                have = os.fstat(self._fd).st_size
                if have <= pos:
                    if not self._writer_gone():
                        await asyncio.sleep(POLL)
                    elif os.fstat(self._fd).st_size <= pos:  # (not written just before)
                        log.warning("NAR %s: the process filling the cache stopped after "
                                    "byte %d; continuing from the network at byte %d",
                                    self.key, have, pos)
                        break
                    continue
                piece = await read_piece(self.key, self.part, self._fd, pos,
                                         min(end, have, pos + READ_PIECE) - pos)
                if piece is None:
                    break
                pos += len(piece)
                yield piece
        finally:
            self._close()
        if pos < end:
            if resume is None:
                raise FillFailedError(f"NAR {self.key}: the process filling it stopped")
            async for piece in resume(pos, end):
                yield piece


async def close_frames(frames: Frames) -> None:
    """Stop an async generator of frames early (its fetch tasks are cancelled); does
    nothing for an iterator without ``aclose``."""
    aclose = getattr(frames, "aclose", None)
    if aclose is not None:
        await aclose()


def file_identity(st: os.stat_result) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of ``st``: which file it describes, whatever its name."""
    return st.st_dev, st.st_ino


def is_file(path: Path, st: os.stat_result) -> bool:
    """Whether ``path`` names the file ``st`` describes (False when nothing is there).

    Raises:
        OSError: ``path`` cannot be looked at (other than missing).
    """
    try:
        return file_identity(os.stat(path)) == file_identity(st)
    except FileNotFoundError:
        return False


def try_lock(path: Path) -> int | None:
    """A descriptor holding the exclusive ``flock`` of the lock file ``path`` (created
    when missing), or None when another holds it.  A lock file removed by its
    holder meanwhile is not taken (the name is tried again).

    Raises:
        OSError: the lock file cannot be opened or created (the disk is full or failing).
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if is_file(path, os.fstat(fd)):
            return fd
        os.close(fd)


def unlock(fd: int, path: Path) -> None:
    """Remove the lock file ``path`` and release its lock (in this order: whoever opened
    the old file meanwhile sees that it is gone).  ``fd``: the descriptor
    :func:`try_lock` gave, closed here.

    Raises:
        OSError: the lock file cannot be removed (``fd`` is closed anyway).
    """
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def held(path: Path) -> bool:
    """Whether some process holds the lock file ``path`` (looks with a shared lock taken
    and dropped at once); False when the file is missing.

    Raises:
        OSError: the lock file exists but cannot be opened.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


async def read_piece(key: str, path: Path, fd: int, pos: int, want: int) -> bytes | None:
    """``want`` bytes (at most) at offset ``pos`` of the fill file ``path`` open as ``fd``,
    read off the event loop; None when the disk failed (logged: the reader goes on from
    the network).

    Raises:
        FillFailedError: the file ends before ``pos`` (it shrank under the reader).
    """
    try:
        piece = await asyncio.get_running_loop().run_in_executor(None, os.pread, fd, want, pos)
    except OSError as exc:
        log.warning("NAR %s: reading the cache file failed at byte %d (%s); "
                    "continuing from the network", key, pos, exc)
        return None
    if not piece:
        raise FillFailedError(f"cache file {path.name} shrank at {pos}")
    return piece

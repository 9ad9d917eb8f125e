"""The local disk cache of rebuilt NARs: LRU under a byte cap, one fill per NAR, shared
by the processes that use the directory (``nixshard serve --workers N``).

Layout under the cache directory::

    nar/<key>                     complete .nar.zst files (the chunks' zstd frames back to back)
    nar/.fills/<key>.<size>.part  the fill in progress of a NAR of <size> bytes; inside
                                  ``nar/`` so a finished fill is renamed on one filesystem,
                                  whatever is mounted
    nar/.fills/<key>.lock         flock-ed by the process writing that fill, while it does
    nar.total                     bytes of the files in ``nar/`` (see Eviction)

``key`` is ``<store hash>-<first 32 hex of sha256(manifest)>``: a path
re-pushed with another manifest gets another file.  Files are written only
from verified chunks (:func:`storage_network.read.stream.stream_payload` checks
every shard against the signed manifest), so a file in ``nar/`` is served as
it is, with sendfile.

A cold NAR is fetched from the network once however many requests ask for
it, in however many processes: the request that takes the key's lock
(``flock``, exclusive, without waiting) starts a :class:`Fill` that writes
the part file and renames it into ``nar/`` once complete; every request
(the first included) follows the growing file from its own offset, so a
``Range`` request on a cold NAR waits only for the bytes it asked for.  In
the filling process readers follow the :class:`Fill` (woken as each piece
lands); in the others a :class:`PeerFill` polls the part file's size every
:data:`POLL` seconds.  The kernel drops the lock of a process that dies:
its followers then see the lock free and the part short, and continue from
the network at their own offset; a part is renamed only when whole, so
``nar/`` never holds a partial file, and a dead writer's part is removed by
the next fill of that key or at start-up (removals hold the key's lock, so
no live fill is touched).

The cache never breaks a read the network can serve.  Before a fill starts,
the filesystem's free space (``os.statvfs``) must hold the NAR, the rest of
the fills in progress (every process's live part files) and ``min_free``
bytes; least recently used files are evicted to make room, and when that is
not enough no fill starts (:meth:`NarCache.open` answers ``"no_space"``: the
caller streams from the network without caching).  When the disk fails
during a fill (ENOSPC, EIO, ...), the fill stops and every reader following
it continues from the network at its own offset (the ``resume`` it gave
:meth:`Fill.read`); only a network failure fails the readers.

Eviction: ``nar.total`` holds the bytes of the files in ``nar/``, and every
change to that set of files (a fill renamed in, an eviction) happens with
the total's ``flock`` held, together with the total's update.  Least
recently served first: each process knows when it served each NAR, and a
hit touches the file's mtime (at most once a minute per process), which
the others see.  A process takes its victims in that order from its last
scan of ``nar/`` and looks at each before it goes: one served since the
scan is passed over, as it is now more recent than the rest of the scan,
and ``nar/`` is scanned again when the scan's files are used up (a scan
also recounts the total exactly).  The order survives restarts through
the mtimes.
"""

from __future__ import annotations

import asyncio
import fcntl
import heapq
import logging
import os
import shutil
import stat
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from storage_network import ChunkUnavailableError

from .metrics import NAR_CACHE_BYTES

log = logging.getLogger("nixshard.serve")
READ_PIECE = 1 << 20
WRITE_PIECE = 1 << 20  # frames are written to the file in pieces of at least this
TOUCH_EVERY = 60.0
TOUCHED_KEPT = 4096  # touch times remembered before the stale ones are dropped
FILLS_DIR = ".fills"
PART, LOCK = ".part", ".lock"
TOTAL_FILE = "nar.total"
DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024
POLL = 0.01
"""Seconds between two looks at a fill written by another process (size, liveness)."""
CLAIM_WAIT = 60.0
"""Seconds a request waits for a key's lock holder to show its part file before it
streams the NAR uncached (a holder creates it at once; this bounds a frozen one)."""

Resume = Callable[[int, int], AsyncIterator[bytes]]
"""``resume(start, end)``: bytes ``[start, end)`` of the NAR from the network."""
Frames = AsyncIterator[bytes]
"""The NAR's zstd frames as the network rebuilds them, in order."""


class FillFailedError(ChunkUnavailableError):
    """The network fetch behind a fill failed after the file was started."""


class Fill:
    """One NAR this process writes to the cache; readers follow it as it grows.

    Attributes:
        key: the cache key; size: bytes the file will have; written: bytes
            written so far; error: why the fill stopped (None while it runs
            or once done); disk_failed: it stopped because the local disk
            failed (readers then continue from the network).
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

    def _notify(self) -> None:
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
                if _identity(os.fstat(fd)) == self.ident:
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
                want = min(end, self.written, pos + READ_PIECE) - pos
                try:
                    piece = await loop.run_in_executor(None, os.pread, fd, want, pos)
                except OSError as exc:
                    log.warning("NAR %s: reading the cache file failed at byte %d (%s); "
                                "continuing from the network", self.key, pos, exc)
                    break
                if not piece:
                    raise FillFailedError(f"cache file {self.tmp.name} shrank at {pos}")
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


class PeerFill:
    """One NAR another process is writing to the cache: its part file, followed as it
    grows (polled every :data:`POLL` seconds).

    Made by :meth:`NarCache.open` with the part file open (``fd``, closed by
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
        if _is_file(self.final, st):
            return False  # complete and renamed: every byte is in it
        return not (_is_file(self.part, st) and _held(self.lock))

    async def read(self, start: int, end: int,
                   resume: Resume | None = None) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of the file, as soon as the other process wrote them.

        When that process stops before writing them (it died, or its fetch or
        disk failed), or this reader's read fails, the rest comes from
        ``resume(pos, end)``, ``pos`` being the first byte not yielded yet.

        Raises:
            FillFailedError: the writer stopped short and no ``resume`` was given.
        """
        loop = asyncio.get_running_loop()
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
                want = min(end, have, pos + READ_PIECE) - pos
                try:
                    piece = await loop.run_in_executor(None, os.pread, self._fd, want, pos)
                except OSError as exc:
                    log.warning("NAR %s: reading the cache file failed at byte %d (%s); "
                                "continuing from the network", self.key, pos, exc)
                    break
                if not piece:
                    raise FillFailedError(f"cache file {self.part.name} shrank at {pos}")
                pos += len(piece)
                yield piece
        finally:
            self._close()
        if pos < end:
            if resume is None:
                raise FillFailedError(f"NAR {self.key}: the process filling it stopped")
            async for piece in resume(pos, end):
                yield piece


class _Total:
    """``nar.total``: the bytes of the files in ``nar/`` as fixed-width decimal, and the
    ``flock`` every change of those files and of the number is made under."""

    WIDTH = 20

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lock (waits for other processes' changes)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def read(self) -> int:
        """The number (0 for a new file); hold the lock."""
        try:
            return int(os.pread(self.fd, 32, 0))
        except ValueError:
            return 0

    def write(self, value: int) -> None:
        """Replace the number; hold the lock."""
        os.pwrite(self.fd, b"%*d" % (self.WIDTH, value), 0)

    def peek(self) -> int | None:
        """The number without waiting: None while a change is under way, or once closed."""
        if self.fd < 0:
            return None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        try:
            return self.read()
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class NarCache:
    """NAR files on disk under ``root`` (at most ``max_bytes`` bytes), and fills in progress.

    ``max_bytes`` 0 keeps nothing (every request streams from the network).
    ``min_free``: bytes of the filesystem a fill never takes (see the module
    docstring).  ``free_bytes(path)``: free bytes of the filesystem holding
    ``path`` (for tests; default from ``os.statvfs``).  Several processes may
    use one ``root`` at once (see the module docstring).

    Raises:
        OSError: ``root`` cannot be set up (not writable).
    """

    def __init__(self, root: Path, max_bytes: int, min_free: int = DEFAULT_MIN_FREE_BYTES,
                 free_bytes: Callable[[Path], int] | None = None):
        self.dir = root / "nar"
        self.tmp_dir = self.dir / FILLS_DIR
        self.max_bytes = max_bytes
        self.min_free = min_free
        self._free_bytes = free_bytes or _statvfs_free
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(root / "nar-tmp", ignore_errors=True)  # the layout before nar/.fills
        self._total = _Total(root / TOTAL_FILE)
        self._bytes = 0
        self._used: dict[str, float] = {}  # key -> when this process last served it (unix s)
        self._touched: dict[str, float] = {}  # key -> when this process last touched it
        self._victims: list[tuple[float, str, int]] = []  # heap of (last use, key, size)
        self._fills: dict[str, Fill] = {}
        with self._total.locked():
            self._remove_dead_fills()
            self._scan()
            self._evict_to(self.max_bytes)

    @property
    def bytes(self) -> int:
        """Bytes of NARs in the cache (every process's), as last counted."""
        value = self._total.peek()
        if value is not None:
            self._bytes = value
        return self._bytes

    def caches(self, size: int) -> bool:
        """Whether a NAR of ``size`` bytes is kept at all."""
        return 0 < size <= self.max_bytes

    def lookup(self, key: str) -> Path | None:
        """The file of a cached NAR (marked as just used), or None."""
        path = self.dir / key
        now = time.time()
        try:
            if now - self._touched.get(key, 0.0) >= TOUCH_EVERY:
                os.utime(path)
                if len(self._touched) >= TOUCHED_KEPT:
                    self._touched = {k: t for k, t in self._touched.items()
                                     if now - t < TOUCH_EVERY}
                self._touched[key] = now
            else:
                os.stat(path)
        except FileNotFoundError:
            self._forget(key)
            return None
        self._used[key] = now
        return path

    async def open(self, key: str, size: int,
                   start: Callable[[], Awaitable[Frames]]
                   ) -> tuple[Path | Fill | PeerFill | None, str]:
        """The cached file, else the fill in progress (of this process or another), else
        a new fill fed by ``start()``.

        Returns it with the outcome: ``"hit"``, ``"join"`` or ``"miss"``; or
        ``(None, "no_space")`` when the disk has no room for a new fill even
        after evicting, or ``(None, "bypass")`` when another process held the
        NAR's lock for :data:`CLAIM_WAIT` seconds without showing a fill (the
        caller streams from the network).  ``start`` is awaited only when no
        fill runs; it locates the chunks and may raise (then nothing is
        started and the error propagates).
        """
        hit = self.lookup(key)
        if hit is not None:
            return hit, "hit"
        fill = self._fills.get(key)
        if fill is not None:
            return fill, "join"
        peer = self._peer_fill(key, size)
        if peer is not None:
            return peer, "join"
        if not self._make_room(key, size):
            return None, "no_space"
        frames = await start()
        try:
            found = await self._claim(key, size)
        except OSError as exc:  # the lock file cannot be made: the disk
            log.warning("NAR %s: cannot lock its cache entry (%s); serving it uncached", key,
                        exc)
            await _close(frames)
            return None, "no_space"
        except BaseException:
            await _close(frames)
            raise
        if not isinstance(found, int):  # another request got there meanwhile
            await _close(frames)
            if found is None:
                return None, "bypass"
            return found, "hit" if isinstance(found, Path) else "join"
        fill = Fill(key, size, self._part(key, size), self.dir / key)
        fill.lock = (found, self._lock_path(key))
        try:
            if not self._make_room(key, size):  # other fills started while start() ran
                _release(fill)
                await _close(frames)
                return None, "no_space"
            fill.tmp.unlink(missing_ok=True)  # a dead writer's part
            fill.tmp.touch()
            fill.ident = _identity(os.stat(fill.tmp))
        except OSError as exc:
            log.warning("NAR %s: cannot start a cache file (%s); serving it uncached", key, exc)
            fill.tmp.unlink(missing_ok=True)
            _release(fill)
            await _close(frames)
            return None, "no_space"
        self._fills[key] = fill
        fill.task = asyncio.create_task(self._run(fill, frames))
        return fill, "miss"

    def _part(self, key: str, size: int) -> Path:
        return self.tmp_dir / f"{key}.{size}{PART}"

    def _lock_path(self, key: str) -> Path:
        return self.tmp_dir / f"{key}{LOCK}"

    def _peer_fill(self, key: str, size: int) -> PeerFill | None:
        """The fill of ``key`` another process is writing now, or None."""
        part = self._part(key, size)
        try:
            fd = os.open(part, os.O_RDONLY)
        except OSError:  # none (or unreadable): no fill to follow
            return None
        try:
            if _is_file(part, os.fstat(fd)) and _held(self._lock_path(key)):
                return PeerFill(key, size, fd, part, self.dir / key, self._lock_path(key))
        except OSError:
            pass
        os.close(fd)
        return None

    async def _claim(self, key: str, size: int) -> int | Path | Fill | PeerFill | None:
        """The key's lock (its descriptor: this request fills), else what serves the NAR
        now (its file, this process's fill, another's); None after :data:`CLAIM_WAIT`
        seconds of a lock held without a fill.

        Raises:
            OSError: the lock file cannot be created (the disk is full or failing).
        """
        deadline = time.monotonic() + CLAIM_WAIT
        while True:
            hit = self.lookup(key)
            if hit is not None:
                return hit
            fill = self._fills.get(key)
            if fill is not None:
                return fill
            lock = self._lock_path(key)
            fd = _try_lock(lock)
            if fd is not None:
                if not (self.dir / key).exists():
                    return fd
                _unlock(fd, lock)  # completed just before: the next round finds it
                continue
            peer = self._peer_fill(key, size)
            if peer is not None:
                return peer
            if time.monotonic() > deadline:
                log.warning("NAR %s: its cache lock is held but no fill shows; serving it "
                            "uncached", key)
                return None
            await asyncio.sleep(POLL)

    def _make_room(self, key: str, size: int) -> bool:
        """Evict least recently used files until a fill of ``size`` bytes fits under
        ``max_bytes`` and the free space; False when it cannot (logged)."""
        try:
            with self._total.locked():
                pending = self._pending()
                self._evict_to(self.max_bytes - pending - size)
                while True:
                    free = self._free_bytes(self.tmp_dir)
                    if free >= size + pending + self.min_free or not self._evict_one():
                        break
        except OSError as exc:
            log.warning("NAR %s: cannot tell the cache disk's free space (%s); serving it "
                        "uncached", key, exc)
            return False
        if free < size + pending + self.min_free:
            log.warning("NAR %s: %d bytes free on the cache disk, %d needed (NAR %d, fills in "
                        "progress %d, kept free %d); serving it uncached", key, free,
                        size + pending + self.min_free, size, pending, self.min_free)
            return False
        return True

    def _pending(self) -> int:
        """Bytes the fills in progress (every process's) have still to write."""
        pending = 0
        with os.scandir(self.tmp_dir) as entries:
            for entry in entries:
                parsed = _part_name(entry.name)
                if parsed is None:
                    continue
                key, size = parsed
                fill = self._fills.get(key)
                if fill is not None:
                    pending += fill.size - fill.written
                    continue
                if not _held(self._lock_path(key)):
                    continue  # its writer is gone
                try:
                    pending += max(0, size - entry.stat().st_size)
                except FileNotFoundError:
                    pass
        return pending

    async def _run(self, fill: Fill, frames: Frames) -> None:
        loop = asyncio.get_running_loop()
        try:
            with open(fill.tmp, "wb", buffering=0) as f:
                pending: list[bytes] = []

                async def flush() -> None:
                    piece = b"".join(pending)
                    pending.clear()
                    await loop.run_in_executor(None, f.write, piece)
                    fill.written += len(piece)
                    fill._notify()

                async for frame in frames:
                    pending.append(frame)
                    if sum(map(len, pending)) >= WRITE_PIECE:
                        await flush()
                await flush()
            if fill.written != fill.size:
                raise FillFailedError(f"rebuilt {fill.written} bytes, manifest says {fill.size}")
            self._complete(fill)
        except asyncio.CancelledError as exc:
            fill.error = exc
            fill.tmp.unlink(missing_ok=True)
            raise
        except Exception as exc:  # noqa: BLE001 - every reader is told through fill.error
            # the network's failures are StorageNetworkErrors; an OSError is the local disk's
            fill.disk_failed = isinstance(exc, OSError)
            fill.error = exc
            fill.done = False
            fill.tmp.unlink(missing_ok=True)
            if fill.disk_failed:
                log.warning("NAR %s: the cache disk failed after %d bytes (%s); its readers "
                            "continue from the network", fill.key, fill.written, exc)
            else:
                log.error("NAR %s: fill failed: %s", fill.key, exc)
        finally:
            _release(fill)
            self._fills.pop(fill.key, None)
            await _close(frames)
            fill._notify()

    def _complete(self, fill: Fill) -> None:
        """Rename the whole part file into ``nar/``, count it, evict to the cap."""
        with self._total.locked():
            os.replace(fill.tmp, fill.final)
            fill.done = True
            self._set_total(self._total.read() + fill.size)
            now = time.time()  # (not a victim before the next scan: see _next_victim)
            self._used[fill.key] = self._touched[fill.key] = now
            self._evict_to(self.max_bytes)

    def _forget(self, key: str) -> None:
        self._used.pop(key, None)
        self._touched.pop(key, None)

    def _set_total(self, value: int) -> None:
        """Write the shared total (hold its lock)."""
        self._total.write(value)
        self._bytes = value
        NAR_CACHE_BYTES.set(value)

    def _scan(self) -> None:
        """Count the files of ``nar/`` into the total and line them up as victims, least
        recently used first (hold the total's lock)."""
        victims, total = [], 0
        with os.scandir(self.dir) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
                    used = max(st.st_mtime, self._used.get(entry.name, 0.0))
                    victims.append((used, entry.name, st.st_size))
        heapq.heapify(victims)
        self._victims = victims
        names = {name for _, name, _ in victims}
        self._used = {k: t for k, t in self._used.items() if k in names}
        self._set_total(total)

    def _next_victim(self) -> tuple[str, int] | None:
        """The least recently used file of the last scan, as (key, size); None when the
        scan's files are used up.

        A file of the scan that was served since (by any process: its mtime, or
        by this one) is passed over: it is now more recent than every file the
        scan saw unserved, and so are the files made since the scan, which the
        next scan lines up.
        """
        while self._victims:
            used, key, _ = heapq.heappop(self._victims)
            try:
                st = os.stat(self.dir / key)
            except FileNotFoundError:
                continue
            if max(st.st_mtime, self._used.get(key, 0.0)) > used:
                continue
            return key, st.st_size
        return None

    def _evict_one(self) -> bool:
        """Remove the least recently used file (hold the total's lock); False when
        ``nar/`` has none."""
        victim = self._next_victim()
        if victim is None:
            self._scan()
            victim = self._next_victim()
            if victim is None:
                return False
        key, size = victim
        try:
            (self.dir / key).unlink()
        except FileNotFoundError:
            return True  # gone meanwhile: the next scan counts it out
        self._forget(key)
        self._set_total(max(0, self._total.read() - size))
        log.info("local cache: evicted %s", key)
        return True

    def _evict_to(self, limit: int) -> None:
        """Evict until ``nar/`` holds at most ``limit`` bytes, or nothing (hold the
        total's lock)."""
        while self._total.read() > limit and self._evict_one():
            pass
        NAR_CACHE_BYTES.set(self._total.read())

    def _remove_dead_fills(self) -> None:
        """Remove what fills of dead processes left in ``nar/.fills`` (each key's lock
        taken first, so a live fill is never touched), and temporary files of older
        versions."""
        for entry in list(os.scandir(self.tmp_dir)):
            key = entry.name.partition(".")[0]
            if not entry.name.endswith((PART, LOCK)):
                Path(entry.path).unlink(missing_ok=True)
                continue
            lock = self._lock_path(key)
            fd = _try_lock(lock)
            if fd is None:
                continue  # a live fill of another process
            for part in self.tmp_dir.glob(f"{key}.*{PART}"):
                part.unlink(missing_ok=True)
            _unlock(fd, lock)

    async def close(self) -> None:
        """Cancel the fills in progress (their temporary files are removed)."""
        tasks = [f.task for f in self._fills.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._total.close()


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _is_file(path: Path, st: os.stat_result) -> bool:
    """Whether ``path`` names the file ``st`` describes."""
    try:
        return _identity(os.stat(path)) == _identity(st)
    except FileNotFoundError:
        return False


def _part_name(name: str) -> tuple[str, int] | None:
    """(key, size) of a part file's name ``<key>.<size>.part``, else None."""
    if not name.endswith(PART):
        return None
    key, _, size = name[:-len(PART)].partition(".")
    return (key, int(size)) if size.isdigit() else None


def _try_lock(path: Path) -> int | None:
    """A descriptor holding the exclusive ``flock`` of the lock file ``path`` (created
    when missing), or None when another holds it.  A lock file removed by its
    holder meanwhile is not taken (the name is tried again)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if _is_file(path, os.fstat(fd)):
            return fd
        os.close(fd)


def _unlock(fd: int, path: Path) -> None:
    """Remove the lock file ``path`` and release its lock (in this order: whoever opened
    the old file meanwhile sees that it is gone)."""
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _release(fill: Fill) -> None:
    """Release the key lock of ``fill`` (once)."""
    if fill.lock is not None:
        fd, path = fill.lock
        fill.lock = None
        _unlock(fd, path)


def _held(path: Path) -> bool:
    """Whether some process holds the lock file ``path`` (looks with a shared lock taken
    and dropped at once)."""
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


def _statvfs_free(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


async def _close(frames: Frames) -> None:
    """Stop an async generator of frames early (its fetch tasks are cancelled)."""
    aclose = getattr(frames, "aclose", None)
    if aclose is not None:
        await aclose()

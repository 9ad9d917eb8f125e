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
it, in however many processes, and every request follows the growing file
from its own offset: see :mod:`cache_server.nar_fills` (:class:`Fill`,
:class:`PeerFill`, the per-key locks).

The cache never breaks a read the network can serve.  Before a fill starts,
the filesystem's free space (``os.statvfs``) must hold the NAR, the rest of
the fills in progress (every process's live part files) and ``min_free``
bytes; least recently used files are evicted to make room, and when that is
not enough no fill starts (:meth:`NarCache.open` answers ``"no_space"``: the
caller streams from the network without caching).  When the disk fails
during a fill, its readers continue from the network (see
:mod:`cache_server.nar_fills`); only a network failure fails the readers.

Eviction: ``nar.total`` (:class:`cache_server.nar_total.SharedTotal`) holds
the bytes of the files in ``nar/``, and every change to that set of files (a
fill renamed in, an eviction) happens with the total's ``flock`` held,
together with the total's update.  Least recently served first: each
process knows when it served each NAR, and a hit touches the file's mtime
(at most once a minute per process), which the others see.  A process takes
its victims in that order from its last scan of ``nar/`` and looks at each
before it goes: one served since the scan is passed over, as it is now more
recent than the rest of the scan, and ``nar/`` is scanned again when the
scan's files are used up (a scan also recounts the total exactly).  The
order survives restarts through the mtimes.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import shutil
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .metrics import NAR_CACHE_BYTES
from .nar_fills import (
    POLL,
    Fill,
    FillFailedError,
    Frames,
    PeerFill,
    close_frames,
    file_identity,
    held,
    is_file,
    try_lock,
    unlock,
)
from .nar_total import SharedTotal

__all__ = ["CLAIM_WAIT", "DEFAULT_MIN_FREE_BYTES", "Fill", "FillFailedError", "NarCache",
           "PeerFill"]

log = logging.getLogger("nixshard.serve")
TOUCH_EVERY = 60.0
TOUCHED_KEPT = 4096  # touch times remembered before the stale ones are dropped
FILLS_DIR = ".fills"
PART, LOCK = ".part", ".lock"
TOTAL_FILE = "nar.total"
DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024
CLAIM_WAIT = 60.0
"""Seconds a request waits for a key's lock holder to show its part file before it
streams the NAR uncached (a holder creates it at once; this bounds a frozen one)."""


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
        self._total = SharedTotal(root / TOTAL_FILE)
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
            await close_frames(frames)
            return None, "no_space"
        except BaseException:
            await close_frames(frames)
            raise
        if not isinstance(found, int):  # another request got there meanwhile
            await close_frames(frames)
            if found is None:
                return None, "bypass"
            return found, "hit" if isinstance(found, Path) else "join"
        fill = Fill(key, size, self._part(key, size), self.dir / key)
        fill.lock = (found, self._lock_path(key))
        try:
            if not self._make_room(key, size):  # other fills started while start() ran
                fill.release_lock()
                await close_frames(frames)
                return None, "no_space"
            fill.tmp.unlink(missing_ok=True)  # a dead writer's part
            fill.tmp.touch()
            fill.ident = file_identity(os.stat(fill.tmp))
        except OSError as exc:
            log.warning("NAR %s: cannot start a cache file (%s); serving it uncached", key, exc)
            fill.tmp.unlink(missing_ok=True)
            fill.release_lock()
            await close_frames(frames)
            return None, "no_space"
        self._fills[key] = fill
        fill.task = asyncio.create_task(fill.run(
            frames, lambda: self._complete(fill), lambda: self._fills.pop(key, None)))
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
            if is_file(part, os.fstat(fd)) and held(self._lock_path(key)):
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
            fd = try_lock(lock)
            if fd is not None:
                if not (self.dir / key).exists():
                    return fd
                unlock(fd, lock)  # completed just before: the next round finds it
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
                if not held(self._lock_path(key)):
                    continue  # its writer is gone
                try:
                    pending += max(0, size - entry.stat().st_size)
                except FileNotFoundError:
                    pass
        return pending

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
            fd = try_lock(lock)
            if fd is None:
                continue  # a live fill of another process
            for part in self.tmp_dir.glob(f"{key}.*{PART}"):
                part.unlink(missing_ok=True)
            unlock(fd, lock)

    async def close(self) -> None:
        """Cancel the fills in progress (their temporary files are removed)."""
        tasks = [f.task for f in self._fills.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._total.close()




def _part_name(name: str) -> tuple[str, int] | None:
    """(key, size) of a part file's name ``<key>.<size>.part``, else None."""
    if not name.endswith(PART):
        return None
    key, _, size = name[:-len(PART)].partition(".")
    return (key, int(size)) if size.isdigit() else None


def _statvfs_free(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize

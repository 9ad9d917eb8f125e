"""The local disk cache of rebuilt NARs: LRU under a byte cap, single-flight fills.

Layout under the cache directory::

    nar/<key>          complete .nar.zst files (the chunks' zstd frames back to back)
    nar/.fills/<key>.* fills in progress (removed at start-up); inside ``nar/`` so a
                       finished fill is renamed on one filesystem, whatever is mounted

``key`` is ``<store hash>-<first 32 hex of sha256(manifest)>``: a path
re-pushed with another manifest gets another file.  Files are written only
from verified chunks (:func:`storage_network.read.stream.stream_payload` checks
every shard against the signed manifest), so a file in ``nar/`` is served as
it is, with sendfile.  Eviction is least recently served first; the order
survives restarts through the files' mtimes (touched at most once a minute
per file).

A cold NAR is fetched from the network once however many requests ask for
it: the first starts a :class:`Fill` that writes the file, every request
(the first included) follows the growing file from its own offset, so a
``Range`` request on a cold NAR waits only for the bytes it asked for.

The cache never breaks a read the network can serve.  Before a fill starts,
the filesystem's free space (``os.statvfs``) must hold the NAR, the rest of
the fills in progress and ``min_free`` bytes; least recently used files are
evicted to make room, and when that is not enough no fill starts
(:meth:`NarCache.open` answers ``"no_space"``: the caller streams from the
network without caching).  When the disk fails during a fill (ENOSPC, EIO,
...), the fill stops and every reader following it continues from the
network at its own offset (the ``resume`` it gave :meth:`Fill.read`); only a
network failure fails the readers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from storage_network import ChunkUnavailableError

from .metrics import NAR_CACHE_BYTES

log = logging.getLogger("nixshard.serve")
READ_PIECE = 1 << 20
WRITE_PIECE = 1 << 20  # frames are written to the file in pieces of at least this
TOUCH_EVERY = 60.0
FILLS_DIR = ".fills"
DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024

Resume = Callable[[int, int], AsyncIterator[bytes]]
"""``resume(start, end)``: bytes ``[start, end)`` of the NAR from the network."""


class FillFailedError(ChunkUnavailableError):
    """The network fetch behind a fill failed after the file was started."""


class Fill:
    """One NAR being written to the cache; readers follow it as it grows.

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

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

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
            try:
                fd = await loop.run_in_executor(None, os.open, self.tmp, os.O_RDONLY)
            except FileNotFoundError:  # completed (renamed) meanwhile, or failed
                if self.done:
                    fd = await loop.run_in_executor(None, os.open, self.final, os.O_RDONLY)
                elif not self.disk_failed:
                    raise FillFailedError(f"NAR fetch failed: {self.error}") from None
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


class NarCache:
    """NAR files on disk under ``root`` (at most ``max_bytes`` bytes), and fills in progress.

    ``max_bytes`` 0 keeps nothing (every request streams from the network).
    ``min_free``: bytes of the filesystem a fill never takes (see the module
    docstring).  ``free_bytes(path)``: free bytes of the filesystem holding
    ``path`` (for tests; default from ``os.statvfs``).
    """

    def __init__(self, root: Path, max_bytes: int, min_free: int = DEFAULT_MIN_FREE_BYTES,
                 free_bytes: Callable[[Path], int] | None = None):
        self.dir = root / "nar"
        self.tmp_dir = self.dir / FILLS_DIR
        self.max_bytes = max_bytes
        self.min_free = min_free
        self._free_bytes = free_bytes or _statvfs_free
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp_dir.iterdir():
            stale.unlink(missing_ok=True)
        shutil.rmtree(root / "nar-tmp", ignore_errors=True)  # the layout before nar/.fills
        files = [(e.stat().st_mtime, e.name, e.stat().st_size)
                 for e in os.scandir(self.dir) if e.is_file()]
        self._lru: OrderedDict[str, int] = OrderedDict(
            (name, size) for _, name, size in sorted(files))
        self._touched: dict[str, float] = {}
        self.bytes = sum(self._lru.values())
        self._fills: dict[str, Fill] = {}
        self._evict()

    def caches(self, size: int) -> bool:
        """Whether a NAR of ``size`` bytes is kept at all."""
        return 0 < size <= self.max_bytes

    def lookup(self, key: str) -> Path | None:
        """The file of a cached NAR (marked as just used), or None."""
        if key not in self._lru:
            return None
        self._lru.move_to_end(key)
        path = self.dir / key
        now = time.time()
        if now - self._touched.get(key, 0.0) >= TOUCH_EVERY:
            self._touched[key] = now
            try:
                os.utime(path)
            except FileNotFoundError:
                self._forget(key)
                return None
        return path

    async def open(self, key: str, size: int,
                   start: Callable[[], Awaitable[AsyncIterator[bytes]]]
                   ) -> tuple[Path | Fill | None, str]:
        """The cached file, else the fill in progress, else a new fill fed by ``start()``.

        Returns it with the outcome: ``"hit"``, ``"join"`` or ``"miss"``; or
        ``(None, "no_space")`` when the disk has no room for a new fill even
        after evicting (the caller streams from the network).  ``start`` is
        awaited only for a new fill; it locates the chunks and may raise
        (then nothing is started and the error propagates).
        """
        hit = self.lookup(key)
        if hit is not None:
            return hit, "hit"
        fill = self._fills.get(key)
        if fill is not None:
            return fill, "join"
        if not self._make_room(key, size):
            return None, "no_space"
        frames = await start()
        hit, fill = self.lookup(key), self._fills.get(key)
        if hit is not None or fill is not None:  # another request got there meanwhile
            await _close(frames)
            return (hit, "hit") if hit is not None else (fill, "join")
        fill = Fill(key, size, self.tmp_dir / f"{key}.{os.getpid()}.{id(frames):x}",
                    self.dir / key)
        try:
            if not self._make_room(key, size):  # other fills started while start() ran
                await _close(frames)
                return None, "no_space"
            fill.tmp.touch()
        except OSError as exc:
            log.warning("NAR %s: cannot start a cache file (%s); serving it uncached", key, exc)
            await _close(frames)
            return None, "no_space"
        self._fills[key] = fill
        fill.task = asyncio.create_task(self._run(fill, frames))
        return fill, "miss"

    def _make_room(self, key: str, size: int) -> bool:
        """Evict least recently used files until a fill of ``size`` bytes fits under
        ``max_bytes`` and the free space; False when it cannot (logged)."""
        pending = sum(f.size - f.written for f in self._fills.values())
        while self._lru and self.bytes + pending + size > self.max_bytes:
            self._evict_one()
        try:
            while True:
                free = self._free_bytes(self.tmp_dir)
                if free >= size + pending + self.min_free or not self._lru:
                    break
                self._evict_one()
        except OSError as exc:
            log.warning("NAR %s: cannot tell the cache disk's free space (%s); serving it "
                        "uncached", key, exc)
            return False
        NAR_CACHE_BYTES.set(self.bytes)
        if free < size + pending + self.min_free:
            log.warning("NAR %s: %d bytes free on the cache disk, %d needed (NAR %d, fills in "
                        "progress %d, kept free %d); serving it uncached", key, free,
                        size + pending + self.min_free, size, pending, self.min_free)
            return False
        return True

    async def _run(self, fill: Fill, frames: AsyncIterator[bytes]) -> None:
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
            os.replace(fill.tmp, fill.final)
            fill.done = True
            self._lru[fill.key] = fill.size
            self.bytes += fill.size
            self._evict()
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
            self._fills.pop(fill.key, None)
            await _close(frames)
            fill._notify()

    def _forget(self, key: str) -> None:
        self.bytes -= self._lru.pop(key, 0)
        self._touched.pop(key, None)

    def _evict_one(self) -> None:
        key = next(iter(self._lru))
        self._forget(key)
        (self.dir / key).unlink(missing_ok=True)
        log.info("local cache: evicted %s", key)

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self._lru:
            self._evict_one()
        NAR_CACHE_BYTES.set(self.bytes)

    async def close(self) -> None:
        """Cancel the fills in progress (their temporary files are removed)."""
        tasks = [f.task for f in self._fills.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _statvfs_free(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


async def _close(frames: AsyncIterator[bytes]) -> None:
    """Stop an async generator of frames early (its fetch tasks are cancelled)."""
    aclose = getattr(frames, "aclose", None)
    if aclose is not None:
        await aclose()

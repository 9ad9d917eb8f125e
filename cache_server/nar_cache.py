"""The local disk cache of rebuilt NARs: LRU under a byte cap, single-flight fills.

Layout under the cache directory::

    nar/<key>        complete .nar.zst files (the chunks' zstd frames back to back)
    nar-tmp/<key>.*  fills in progress (removed at start-up)

``key`` is ``<store hash>-<first 32 hex of sha256(manifest)>``: a path
re-pushed with another manifest gets another file.  Files are written only
from verified chunks (:func:`storage_network.fetch.stream_payload` checks
every shard against the signed manifest), so a file in ``nar/`` is served as
it is, with sendfile.  Eviction is least recently served first; the order
survives restarts through the files' mtimes (touched at most once a minute
per file).

A cold NAR is fetched from the network once however many requests ask for
it: the first starts a :class:`Fill` that writes the file, every request
(the first included) follows the growing file from its own offset, so a
``Range`` request on a cold NAR waits only for the bytes it asked for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from storage_network.errors import ChunkUnavailableError

from .metrics import NAR_CACHE_BYTES

log = logging.getLogger("nixshard.serve")
READ_PIECE = 1 << 20
WRITE_PIECE = 1 << 20  # frames are written to the file in pieces of at least this
TOUCH_EVERY = 60.0


class FillFailedError(ChunkUnavailableError):
    """The network fetch behind a fill failed after the file was started."""


class Fill:
    """One NAR being written to the cache; readers follow it as it grows.

    Attributes:
        key: the cache key; size: bytes the file will have; written: bytes
            written so far.
    """

    def __init__(self, key: str, size: int, tmp: Path, final: Path):
        self.key, self.size, self.tmp, self.final = key, size, tmp, final
        self.written = 0
        self.error: BaseException | None = None
        self.done = False
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def read(self, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of the file, as soon as they are written.

        Raises:
            FillFailedError: the fill failed before reaching ``end``.
        """
        loop = asyncio.get_running_loop()
        try:
            fd = await loop.run_in_executor(None, os.open, self.tmp, os.O_RDONLY)
        except FileNotFoundError:  # completed (renamed) meanwhile
            if not self.done:
                raise FillFailedError(f"NAR fetch failed: {self.error}") from None
            fd = await loop.run_in_executor(None, os.open, self.final, os.O_RDONLY)
        try:
            pos = start
            while pos < end:
                if self.error is not None:
                    raise FillFailedError(f"NAR fetch failed: {self.error}")
                if self.written <= pos:
                    await self._changed.wait()
                    continue
                want = min(end, self.written, pos + READ_PIECE) - pos
                piece = await loop.run_in_executor(None, os.pread, fd, want, pos)
                if not piece:
                    raise FillFailedError(f"cache file {self.tmp.name} shrank at {pos}")
                pos += len(piece)
                yield piece
        finally:
            os.close(fd)


class NarCache:
    """NAR files on disk under ``root`` (at most ``max_bytes`` bytes), and fills in progress.

    ``max_bytes`` 0 keeps nothing (every request streams from the network).
    """

    def __init__(self, root: Path, max_bytes: int):
        self.dir = root / "nar"
        self.tmp_dir = root / "nar-tmp"
        self.max_bytes = max_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp_dir.iterdir():
            stale.unlink(missing_ok=True)
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
                   ) -> tuple[Path | Fill, str]:
        """The cached file, else the fill in progress, else a new fill fed by ``start()``.

        Returns it with the outcome: ``"hit"``, ``"join"`` or ``"miss"``.
        ``start`` is awaited only when no fill runs; it locates the chunks and
        may raise (then nothing is started and the error propagates).
        """
        hit = self.lookup(key)
        if hit is not None:
            return hit, "hit"
        fill = self._fills.get(key)
        if fill is not None:
            return fill, "join"
        frames = await start()
        hit, fill = self.lookup(key), self._fills.get(key)
        if hit is not None or fill is not None:  # another request got there meanwhile
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()
            return (hit, "hit") if hit is not None else (fill, "join")  # type: ignore[return-value]
        fill = Fill(key, size, self.tmp_dir / f"{key}.{os.getpid()}.{id(frames):x}",
                    self.dir / key)
        fill.tmp.touch()
        self._fills[key] = fill
        fill.task = asyncio.create_task(self._run(fill, frames))
        return fill, "miss"

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
            fill.done = True
            os.replace(fill.tmp, fill.final)
            self._lru[fill.key] = fill.size
            self.bytes += fill.size
            self._evict()
        except asyncio.CancelledError as exc:
            fill.error = exc
            fill.tmp.unlink(missing_ok=True)
            raise
        except Exception as exc:  # noqa: BLE001 - every reader is told through fill.error
            fill.error = exc
            fill.done = False
            fill.tmp.unlink(missing_ok=True)
            log.error("NAR %s: fill failed: %s", fill.key, exc)
        finally:
            self._fills.pop(fill.key, None)
            fill._notify()

    def _forget(self, key: str) -> None:
        self.bytes -= self._lru.pop(key, 0)
        self._touched.pop(key, None)

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self._lru:
            key = next(iter(self._lru))
            self._forget(key)
            (self.dir / key).unlink(missing_ok=True)
            log.info("local cache: evicted %s", key)
        NAR_CACHE_BYTES.set(self.bytes)

    async def close(self) -> None:
        """Cancel the fills in progress (their temporary files are removed)."""
        tasks = [f.task for f in self._fills.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

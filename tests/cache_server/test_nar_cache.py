"""The local disk cache's single-flight fills (:mod:`cache_server.nar_cache`), driven directly.

The network side is a generator the test releases frame by frame, so which
request starts the fill and which ones follow it does not depend on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cache_server.nar_cache import Fill, FillFailedError, NarCache

FRAMES = [b"a" * 1000, b"b" * 3000, b"c" * 500]
SIZE = sum(map(len, FRAMES))


class Gate:
    """Frames released one at a time by :meth:`release`; counts how often it was started."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.starts = 0
        self.released = asyncio.Semaphore(0)
        self.fail_after = fail_after

    async def start(self) -> AsyncIterator[bytes]:
        self.starts += 1
        return self.frames()

    async def frames(self) -> AsyncIterator[bytes]:
        for number, frame in enumerate(FRAMES):
            await self.released.acquire()
            if self.fail_after is not None and number >= self.fail_after:
                raise OSError("network gone")
            yield frame

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self.released.release()


async def read_all(fill: Fill, start: int = 0, end: int = SIZE) -> bytes:
    return b"".join([piece async for piece in fill.read(start, end)])


async def test_requests_during_a_fill_join_it_and_read_the_same_bytes(tmp_path: Path) -> None:
    cache = NarCache(tmp_path, 1 << 20)
    gate = Gate()
    first, outcome = await cache.open("key", SIZE, gate.start)
    assert outcome == "miss" and isinstance(first, Fill)
    joined = [await cache.open("key", SIZE, gate.start) for _ in range(3)]
    assert [o for _, o in joined] == ["join"] * 3
    assert all(f is first for f, _ in joined)
    readers = [asyncio.create_task(read_all(first)),
               asyncio.create_task(read_all(first, 1500, 4000))]
    gate.release(len(FRAMES))
    whole, middle = await asyncio.gather(*readers)
    assert whole == b"".join(FRAMES)
    assert middle == whole[1500:4000]
    assert gate.starts == 1
    assert first.task is not None
    await first.task
    hit, outcome = await cache.open("key", SIZE, gate.start)
    assert outcome == "hit" and isinstance(hit, Path) and hit.read_bytes() == whole
    assert gate.starts == 1


async def test_a_failed_fill_fails_its_readers_and_leaves_no_file(tmp_path: Path) -> None:
    cache = NarCache(tmp_path, 1 << 20)
    gate = Gate(fail_after=1)
    fill, _ = await cache.open("key", SIZE, gate.start)
    assert isinstance(fill, Fill)
    reader = asyncio.create_task(read_all(fill))
    gate.release(2)
    with pytest.raises(FillFailedError, match="network gone"):
        await reader
    assert cache.lookup("key") is None
    assert list((tmp_path / "nar").iterdir()) == []
    assert list((tmp_path / "nar-tmp").iterdir()) == []

"""The local disk cache's single-flight fills (:mod:`cache_server.nar_cache`), driven directly.

The network side is a generator the test releases frame by frame, so which
request starts the fill and which ones follow it does not depend on timing.
Full disks are real: a small tmpfs (see ``mount_tmpfs`` in conftest.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cache_server.nar_cache import NarCache
from cache_server.nar_fills import Fill, FillFailedError
from tests.support.disk import fill_up

from .conftest import MountTmpfs

FRAMES = [b"a" * 1000, b"b" * 3000, b"c" * 500]
SIZE = sum(map(len, FRAMES))


class Gate:
    """Frames released one at a time by :meth:`release`; counts how often it was started."""

    def __init__(self, fail_after: int | None = None,
                 frames: list[bytes] | None = None) -> None:
        self.starts = 0
        self.released = asyncio.Semaphore(0)
        self.fail_after = fail_after
        self.list = FRAMES if frames is None else frames

    async def start(self) -> AsyncIterator[bytes]:
        self.starts += 1
        return self.frames()

    async def frames(self) -> AsyncIterator[bytes]:
        for number, frame in enumerate(self.list):
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
    assert [p for p in (tmp_path / "nar").iterdir() if p.is_file()] == []
    assert list((tmp_path / "nar" / ".fills").iterdir()) == []


# -- a full disk never breaks a read ------------------------------------------------------

MIB = 1 << 20
BIG = [bytes([i]) * MIB for i in range(4)]  # one write (WRITE_PIECE) per frame
BIG_NAR = b"".join(BIG)


class Network:
    """Stands in for the network a reader resumes from: records each ``(start, end)``."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int]] = []

    async def resume(self, start: int, end: int) -> AsyncIterator[bytes]:
        self.asked.append((start, end))
        for pos in range(start, end, 100_000):
            yield BIG_NAR[pos:min(end, pos + 100_000)]


class Reader:
    """Reads ``[start, end)`` of a fill in a task, keeping what it got."""

    def __init__(self, fill: Fill, start: int, end: int, net: Network) -> None:
        self.start, self.end, self.got = start, end, bytearray()
        self.task = asyncio.create_task(self._run(fill, net))

    async def _run(self, fill: Fill, net: Network) -> bytes:
        async for piece in fill.read(self.start, self.end, net.resume):
            self.got += piece
        return bytes(self.got)


async def until(condition: object, what: str) -> None:
    """Wait (bounded: 30 s of 10 ms steps) until ``condition()`` holds."""
    for _ in range(3000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_a_disk_full_mid_fill_sends_readers_to_the_network_from_their_offset(
        tmp_path: Path, mount_tmpfs: MountTmpfs, caplog: pytest.LogCaptureFixture) -> None:
    """ENOSPC after the first MiB: both readers continue from the network at the byte
    they had reached, and get every byte once, in order."""
    root = mount_tmpfs(tmp_path / "disk", 8 * MIB)
    cache = NarCache(root, 64 * MIB, min_free=0)
    gate, net = Gate(frames=BIG), Network()
    fill, outcome = await cache.open("key", len(BIG_NAR), gate.start)
    assert outcome == "miss" and isinstance(fill, Fill)
    whole = Reader(fill, 0, len(BIG_NAR), net)
    part = Reader(fill, 1000, len(BIG_NAR) - 10, net)
    gate.release()
    await until(lambda: len(whole.got) == MIB and len(part.got) == MIB - 1000,
                "both readers have the first MiB")
    fill_up(root)  # the disk is now really full
    with caplog.at_level(logging.WARNING, "nixshard.serve"):
        gate.release(len(BIG) - 1)
        assert await whole.task == BIG_NAR
        assert await part.task == BIG_NAR[1000:-10]
    assert sorted(net.asked) == [(MIB, len(BIG_NAR) - 10), (MIB, len(BIG_NAR))]
    assert fill.disk_failed and "continue from the network" in caplog.text
    assert cache.lookup("key") is None
    assert list((root / "nar" / ".fills").iterdir()) == []
    # a request arriving now finds the disk still full: it streams uncached
    assert await cache.open("key", len(BIG_NAR), Gate(frames=BIG).start) == (None, "no_space")


async def test_no_room_on_the_disk_means_no_fill(tmp_path: Path,
                                                 mount_tmpfs: MountTmpfs) -> None:
    """statvfs says the NAR does not fit: nothing is started, the caller streams uncached."""
    root = mount_tmpfs(tmp_path / "disk", 4 * MIB)
    cache = NarCache(root, 64 * MIB, min_free=0)
    fill_up(root, leave=2 * MIB)
    gate = Gate(frames=BIG)
    found, outcome = await cache.open("key", len(BIG_NAR), gate.start)
    assert (found, outcome) == (None, "no_space")
    assert gate.starts == 0  # no network work was started for a fill that cannot be
    # min_free counts too: 2 MiB free, a 1 MiB NAR, but 1.5 MiB must stay free
    strict = NarCache(root, 64 * MIB, min_free=MIB + MIB // 2)
    assert (await strict.open("small", MIB, Gate(frames=BIG[:1]).start))[1] == "no_space"


async def test_least_recently_used_files_are_evicted_to_make_room(
        tmp_path: Path, mount_tmpfs: MountTmpfs) -> None:
    root = mount_tmpfs(tmp_path / "disk", 6 * MIB)
    cache = NarCache(root, 64 * MIB, min_free=0)
    for key in ("old", "recent"):
        gate = Gate(frames=BIG[:2])
        fill, _ = await cache.open(key, 2 * MIB, gate.start)
        assert isinstance(fill, Fill)
        gate.release(2)
        assert fill.task is not None
        await fill.task
    assert cache.lookup("recent") is not None  # "old" is now the least recently used
    gate = Gate(frames=BIG[:3])
    fill, outcome = await cache.open("new", 3 * MIB, gate.start)
    assert outcome == "miss" and isinstance(fill, Fill)
    assert cache.lookup("old") is None and cache.lookup("recent") is not None
    assert not (root / "nar" / "old").exists()
    gate.release(3)
    assert fill.task is not None
    await fill.task
    assert cache.lookup("new") is not None

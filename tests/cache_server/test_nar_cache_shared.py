"""One cache directory, two users (:mod:`cache_server.nar_cache`), driven directly.

Two :class:`NarCache` objects on one directory behave as two worker
processes do: their ``flock`` locks are taken on separate open files, so
they exclude each other exactly as two processes' would.  A "dead" writer is
one whose lock the kernel has dropped (its descriptor closed) while its
part file stays, as after a SIGKILL.  The network is a generator the test
releases frame by frame (as in test_nar_cache.py), so nothing depends on
timing.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from cache_server.nar_cache import NarCache
from cache_server.nar_fills import Fill, PeerFill

from .test_nar_cache import BIG, BIG_NAR, FRAMES, MIB, SIZE, Gate, Network, until


async def read_all(fill: Fill | PeerFill, net: Network | None = None, start: int = 0,
                   end: int | None = None) -> bytes:
    size = fill.size if end is None else end
    resume = net.resume if net is not None else None
    return b"".join([piece async for piece in fill.read(start, size, resume)])


def files(root: Path) -> dict[str, int]:
    """Name -> size of the complete files of the cache."""
    return {f.name: f.stat().st_size for f in (root / "nar").iterdir() if f.is_file()}


async def test_another_process_follows_the_fill_and_never_fetches(tmp_path: Path) -> None:
    one, two = NarCache(tmp_path, 1 << 20), NarCache(tmp_path, 1 << 20)
    gate, idle = Gate(), Gate()
    fill, outcome = await one.open("key", SIZE, gate.start)
    assert outcome == "miss" and isinstance(fill, Fill)
    followed, outcome = await two.open("key", SIZE, idle.start)
    assert outcome == "join" and isinstance(followed, PeerFill)
    readers = [asyncio.create_task(read_all(followed)),
               asyncio.create_task(read_all(fill))]
    gate.release(len(FRAMES))
    assert await asyncio.gather(*readers) == [b"".join(FRAMES)] * 2
    assert (gate.starts, idle.starts) == (1, 0)
    assert fill.task is not None
    await fill.task
    hit, outcome = await two.open("key", SIZE, idle.start)
    assert outcome == "hit" and isinstance(hit, Path) and idle.starts == 0
    assert two.bytes == one.bytes == SIZE
    assert list((tmp_path / "nar" / ".fills").iterdir()) == []


async def test_a_dead_writer_sends_its_followers_to_the_network(tmp_path: Path) -> None:
    """The writer's lock goes (as the kernel drops a killed process's) after 1 MiB: the
    follower keeps that MiB and asks the network for the rest only; nothing partial
    enters nar/, and the next start-up removes the dead part file."""
    one, two = NarCache(tmp_path, 64 * MIB), NarCache(tmp_path, 64 * MIB)
    gate, net = Gate(frames=BIG), Network()
    fill, _ = await one.open("key", len(BIG_NAR), gate.start)
    assert isinstance(fill, Fill) and fill.lock is not None
    followed, outcome = await two.open("key", len(BIG_NAR), Gate(frames=BIG).start)
    assert outcome == "join" and isinstance(followed, PeerFill)
    reader = asyncio.create_task(read_all(followed, net))
    gate.release()
    await until(lambda: fill.written == MIB, "the writer wrote its first MiB")
    os.close(fill.lock[0])  # the writer "dies": its lock is gone, its part file stays
    fill.lock = None
    assert await reader == BIG_NAR
    assert net.asked == [(MIB, len(BIG_NAR))]
    assert files(tmp_path) == {}
    parts = list((tmp_path / "nar" / ".fills").glob("*.part"))
    assert len(parts) == 1
    three = NarCache(tmp_path, 64 * MIB)  # the next start-up
    assert not parts[0].exists()
    assert fill.task is not None
    fill.task.cancel()
    await asyncio.gather(fill.task, return_exceptions=True)
    again = Gate(frames=BIG)
    refill, outcome = await three.open("key", len(BIG_NAR), again.start)
    assert outcome == "miss" and isinstance(refill, Fill)
    again.release(len(BIG))
    assert await read_all(refill) == BIG_NAR
    assert refill.task is not None
    await refill.task
    assert (tmp_path / "nar" / "key").read_bytes() == BIG_NAR


async def fill(cache: NarCache, key: str, frames: list[bytes]) -> None:
    gate = Gate(frames=frames)
    found, outcome = await cache.open(key, sum(map(len, frames)), gate.start)
    assert outcome == "miss" and isinstance(found, Fill) and found.task is not None
    gate.release(len(frames))
    await found.task


async def test_eviction_keeps_both_processes_under_one_cap_least_recent_first(
        tmp_path: Path) -> None:
    """Room for two of three NARs: the files of both count against one cap, and the
    one evicted is the least recently served by either."""
    one, two = NarCache(tmp_path, 5 * MIB), NarCache(tmp_path, 5 * MIB)
    await fill(one, "old", BIG[:2])
    await fill(two, "mid", BIG[:2])
    os.utime(tmp_path / "nar" / "old", (1, 1))  # served long ago ...
    os.utime(tmp_path / "nar" / "mid", (2, 2))
    assert two.lookup("old") is not None  # ... and now again, by the other process
    await fill(one, "new", BIG[:2])
    assert files(tmp_path) == {"old": 2 * MIB, "new": 2 * MIB}
    assert one.bytes == two.bytes == 4 * MIB
    assert one.lookup("mid") is None and two.lookup("mid") is None
    # a process started now counts what is there
    assert NarCache(tmp_path, 5 * MIB).bytes == 4 * MIB


async def test_a_file_served_elsewhere_since_the_last_scan_is_not_evicted(
        tmp_path: Path) -> None:
    """A process takes its victims from its last scan of nar/: one that another process
    served since then (its mtime moved) is passed over for the next least recent."""
    one, two = NarCache(tmp_path, 3 * MIB + MIB // 2), NarCache(tmp_path, 4 * MIB)
    for number, key in enumerate(("a", "b", "c"), 1):
        await fill(two, key, BIG[:1])
        os.utime(tmp_path / "nar" / key, (number, number))  # served long ago, in this order
    await fill(one, "d", BIG[:1])  # one scans: a, b, c; a goes
    assert sorted(files(tmp_path)) == ["b", "c", "d"]
    assert NarCache(tmp_path, 4 * MIB).lookup("b") is not None  # a third process serves b
    await fill(one, "e", BIG[:1])
    assert sorted(files(tmp_path)) == ["b", "d", "e"]

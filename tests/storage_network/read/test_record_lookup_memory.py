"""What a reader remembers of record keys (RecordMemory) and its background tasks: bounds."""

from __future__ import annotations

import asyncio

from nixshard.localnet import new_publisher
from storage_network.client import Background
from storage_network.read.record_memory import RecordMemory
from storage_network.wire.manifest import Manifest
from storage_network.wire.record import Record, open_record, seal_record

from ..conftest import record_key

PUBLISHER = new_publisher("memory-test-1")[0]
EMPTY = Manifest("isa_l_rs_cauchy", 4, 2, ())


def version(key: str, created: int, metadata: bytes = b"x") -> tuple[Record, bytes]:
    envelope = seal_record(PUBLISHER, key, metadata, EMPTY, created=created)
    return open_record({PUBLISHER.name: PUBLISHER.public}, key, envelope), envelope


def test_an_older_version_never_replaces_a_newer_one() -> None:
    memory = RecordMemory()
    key = record_key(1)
    new, old = version(key, 2000), version(key, 1000)
    memory.saw(*new)
    memory.saw(*old)
    assert memory.version(key) == new[0].version
    assert memory.record(key) == new


def test_versions_outlive_records_and_both_are_bounded() -> None:
    memory = RecordMemory(records=2, record_bytes=1 << 20, versions=3)
    keys = [record_key(10 + i) for i in range(4)]
    seen = [version(key, 1000 + i) for i, key in enumerate(keys)]
    for record, envelope in seen:
        memory.saw(record, envelope)
    assert len(memory) == 3 and memory.version(keys[0]) is None  # least recently seen
    assert [memory.version(k) for k in keys[1:]] == [r.version for r, _ in seen[1:]]
    assert memory.record(keys[1]) is None  # its version only
    assert memory.record(keys[2]) == seen[2] and memory.record(keys[3]) == seen[3]


def test_records_are_bounded_by_bytes() -> None:
    key_a, key_b = record_key(20), record_key(21)
    a, b = version(key_a, 1000, b"a" * 3000), version(key_b, 1000, b"b" * 3000)
    memory = RecordMemory(record_bytes=len(a[1]) + 100)
    memory.saw(*a)
    memory.saw(*b)
    assert memory.record(key_a) is None and memory.record(key_b) == b
    assert memory.version(key_a) == a[0].version  # the version stays


async def test_background_tasks_are_bounded_per_group_and_cancelled_on_close() -> None:
    background = Background(per_group=2, total=3)
    gate = asyncio.Event()
    started = [background.spawn(gate.wait(), "a") for _ in range(3)]
    assert started[2] is None and background.running("a") == 2
    late = asyncio.create_task(gate.wait())
    assert background.adopt(late, "b")
    over = asyncio.create_task(gate.wait())
    assert not background.adopt(over, "c")  # over the total: cancelled
    await asyncio.gather(over, return_exceptions=True)
    assert over.cancelled() and len(background) == 3
    gate.set()
    await background.idle()
    assert len(background) == 0 and background.running("a") == 0
    blocked = background.spawn(asyncio.Event().wait(), "a")
    assert blocked is not None
    await background.close()
    assert blocked.cancelled()

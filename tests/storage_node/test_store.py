"""The on-disk store: layout, start-up scan, leftovers, atomic placement."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage_node.record_store import RecordWrite
from storage_node.shard_store import ShardWrite
from storage_node.store import Store

from .samples import record_key, stripe


async def test_scan_counts_what_is_stored_and_ignores_junk(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    shards = stripe(n=3)
    for sid, body in shards:
        with store.new_temp() as temp:
            temp.write(body)
            assert await store.commit_shard(temp, sid) is ShardWrite.NEW
    await store.write_record(record_key(), b"r1")
    (tmp_path / "shards" / "00" / "junk").write_bytes(b"junk")
    (tmp_path / "records" / "README").write_bytes(b"junk")
    store.close()

    again = Store.open(tmp_path)
    assert (again.stats.shards, again.stats.records) == (3, 1)
    assert again.stats.shard_bytes == sum(len(b) for _, b in shards)
    again.close()


def test_leftover_temp_files_are_removed_at_start(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    (tmp_path / "tmp" / "dead.part").write_bytes(b"half a shard")
    store = Store.open(tmp_path)
    assert list((tmp_path / "tmp").iterdir()) == []
    store.close()


async def test_a_stored_shard_is_never_rewritten(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    (sid, body), *_ = stripe()
    for content, expect in ((body, ShardWrite.NEW), (b"something else", ShardWrite.HELD)):
        with store.new_temp() as temp:
            temp.write(content)
            assert await store.commit_shard(temp, sid) is expect
    assert store.shard_path(sid).read_bytes() == body
    assert list((tmp_path / "tmp").iterdir()) == []
    assert store.stats.shards == 1
    store.close()


async def test_a_record_is_replaced_atomically(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    key = record_key()
    assert await store.write_record(key, b"one") is RecordWrite.CREATED
    assert await store.write_record(key, b"two") is RecordWrite.REPLACED
    assert store.record_path(key).read_bytes() == b"two"
    assert store.stats.records == 1
    store.close()


def test_temp_file_is_deleted_unless_committed(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with pytest.raises(RuntimeError), store.new_temp() as temp:
        temp.write(b"partial")
        raise RuntimeError("client went away")
    assert not temp.path.exists()
    store.close()


@pytest.mark.parametrize("name", [
    "../../etc/passwd", "..", "", "a" * 64, "/etc/passwd", "a" * 64 + ".0\n", "a" * 32 + "\n",
    "a" * 64 + ".0/../../x", "a" * 32 + "/../../x",
])
def test_paths_are_only_built_from_valid_names(tmp_path: Path, name: str) -> None:
    store = Store(tmp_path)
    with pytest.raises(ValueError):
        store.shard_path(name)
    with pytest.raises(ValueError):
        store.record_path(name)

"""The record table garbage collection and repair work on (SQLite on disk): the
expiry plan's closure walked in SQL against a plain breadth-first walk in Python on
random graphs, the stripes repair walks, and the live set the sweep checks."""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Iterator

import pytest

from nixshard.localnet import new_publisher
from storage_network.upkeep.record_expiry import note_links, plan_expiry
from storage_network.upkeep.record_scan import RecordCopy
from storage_network.upkeep.record_table import RecordTable
from storage_network.wire.manifest import ChunkRef, Manifest
from storage_network.wire.record import Record
from tests.support.record_tables import reader

T0 = 1_700_000_000
DAY = 86400
PUBLISHER = new_publisher("table-1")[0]


@pytest.fixture
def table() -> Iterator[RecordTable]:
    with RecordTable() as t:
        yield t


def ref(root: bytes) -> ChunkRef:
    return ChunkRef(hashlib.sha256(root).digest(), root, 1000, 600)


def record(key: str, *, created: int = T0, expires: int | None = None, metadata: str = "",
           roots: tuple[bytes, ...] = (), tombstone: bool = False, k: int = 4,
           m: int = 2) -> Record:
    data = metadata.encode()
    return Record(key, PUBLISHER.public, data,
                  Manifest("isa_l_rs_cauchy", k, m, tuple(ref(r) for r in roots)), created,
                  tombstone=tombstone, digest=hashlib.sha256(key.encode() + data).digest(),
                  expires=expires)


def key_of(number: int) -> str:
    return f"key-{number:05d}"


@pytest.mark.parametrize("seed", range(8))
def test_the_closure_in_sql_is_the_breadth_first_walk(table: RecordTable, seed: int) -> None:
    """Random graphs of 300 records (each needing up to 4 earlier ones, some absent, a
    few pins, some lapsed leases): what expires and what is retained are exactly what
    a plain walk from the records that are not due and from the pins gives."""
    rng = random.Random(seed)
    needs: dict[str, list[str]] = {}
    due: dict[str, bool] = {}
    lapsed: set[str] = set()
    pins: set[str] = set()
    for number in range(300):
        key = key_of(number)
        wanted = [key_of(rng.randrange(number + 50)) for _ in range(rng.randrange(5))]
        pin = number % 37 == 5
        old = rng.random() < 0.7
        expires = T0 - 10 if rng.random() < 0.05 else None
        rec = record(key, created=T0 - (90 if old else 1) * DAY, expires=expires,
                     metadata=(f"pin=pin-{number};" if pin else "") + "needs=" + ",".join(wanted))
        table.add(key, rec, T0, {})
        note_links(table, rec, reader)
        needs[key] = wanted
        due[key] = old or expires is not None
        if expires is not None:
            lapsed.add(key)
        elif pin and wanted:
            pins.add(key)
    plan = plan_expiry(table, T0, 30 * DAY, None, closure=True)

    kept = {k for k in needs if not due[k]} | pins
    queue = deque(kept)
    while queue:
        for need in needs[queue.popleft()]:
            if need in needs and need not in kept and need not in lapsed:
                kept.add(need)
                queue.append(need)
    assert set(plan.expiring) == {k for k in needs if due[k] and k not in kept}
    assert set(plan.retained) == {k for k in kept if due[k]}
    assert {p.key for p in plan.pins} == pins
    assert lapsed <= set(plan.expiring), "a lapsed lease expires whatever needs it"
    assert plan.retained_count() == len(plan.retained)
    assert [r.key for r in plan.retained_first(5)] == sorted(plan.retained)[:5]


def test_stripes_come_in_batches_of_one_code_in_root_order(table: RecordTable) -> None:
    rng = random.Random(3)
    want: dict[tuple[int, int], set[bytes]] = {(4, 2): set(), (2, 1): set()}
    for number in range(40):
        k, m = (4, 2) if number % 3 else (2, 1)
        roots = tuple(rng.randbytes(32) for _ in range(rng.randrange(1, 6)))
        table.add(key_of(number), record(key_of(number), roots=roots, k=k, m=m), T0, {})
        want[(k, m)].update(roots)
    table.add("gone", record("gone", roots=(b"\x01" * 32,), tombstone=True), T0, {})
    seen: dict[tuple[int, int], list[bytes]] = {(4, 2): [], (2, 1): []}
    for batch in table.stripe_batches(7):
        assert 0 < len(batch) <= 7
        (code,) = {(s.k, s.m) for s in batch}
        seen[code].extend(s.ref.root for s in batch)
        assert all(s.ref == ref(s.ref.root) for s in batch)
    for code, roots in seen.items():
        assert roots == sorted(want[code]), "each code's stripes once, by root"
    assert table.stripe_count() == sum(len(r) for r in want.values())


def test_the_live_set_holds_the_stripes_of_every_kept_copy(table: RecordTable) -> None:
    """A key's copies may be older versions referencing other stripes: keeping the key
    keeps them all; nothing else is live."""
    new = record("a", roots=(b"\x0a" * 32,), created=T0)
    old = record("a", roots=(b"\x0b" * 32,), created=T0 - 5, metadata="old")
    other = record("b", roots=(b"\x0c" * 32,))
    table.add("a", new, T0, {"node-1": RecordCopy(b"n", new), "node-2": RecordCopy(b"o", old)})
    table.add("b", other, T0, {"node-1": RecordCopy(b"b", other)})
    assert b"\x0a" * 32 not in table and table.live_count() == 0
    table.keep("a")
    assert {b"\x0a" * 32, b"\x0b" * 32} == {r for r in (b"\x0a" * 32, b"\x0b" * 32,
                                                        b"\x0c" * 32) if r in table}
    table.keep_where("keys.key = ?", "b")
    assert b"\x0c" * 32 in table and table.live_count() == 3
    assert table.copies("a") == {"node-1": (new.digest, False), "node-2": (old.digest, False)}

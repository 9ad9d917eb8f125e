"""gc's expiry plan at scale: the record table (SQLite on disk) against a walk in memory.

Usage: python benchmarks/gc_plan.py [--sizes 100000,400000,1000000] [--needs 8]

For each size, a fresh interpreter builds synthetic live records (each needing
``--needs`` random earlier ones; 70 % older than the age limit, a pin every
10,000 records), then runs one of two passes and reports its CPU seconds and how much the
peak RSS of the process grew during it (Python objects and SQLite's page
cache alike):

* ``table``: the records written to a
  :class:`~storage_network.upkeep.record_table.RecordTable` with their links
  (:func:`~storage_network.upkeep.record_expiry.note_links`), then
  :func:`~storage_network.upkeep.record_expiry.plan_expiry` with the closure:
  what ``collect_garbage`` does after the scan;
* ``memory`` (the reference): the same decision as dicts and sets in memory
  (needs per key, a breadth-first walk from the records that are not due and
  the pins), as gc held it before the record table.

No nodes: the scan's network cost is measured by ``upkeep_memory.py``.  Prints
one Markdown table.  Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass

from nixshard.localnet import new_publisher
from storage_network.upkeep.record_expiry import note_links, plan_expiry
from storage_network.upkeep.record_table import RecordTable
from storage_network.wire.manifest import ChunkRef, Manifest
from storage_network.wire.record import Record

T0 = 1_700_000_000
DAY = 86400
MAX_AGE = 30 * DAY
PASSES = ("table", "memory")


@dataclass(frozen=True)
class Links:
    """What a synthetic record needs."""

    needs: tuple[str, ...]
    pin: str | None
    label: str


def key_of(number: int) -> str:
    """A 32-character key for record ``number``."""
    return f"{number:032d}"


def synthetic(size: int, needs: int) -> list[tuple[str, int, tuple[str, ...], str | None]]:
    """``(key, created, needs, pin)`` of ``size`` records, seeded."""
    rng = random.Random(size)
    out = []
    for number in range(size):
        wanted = tuple(key_of(rng.randrange(number)) for _ in range(needs)) if number else ()
        created = T0 - (90 if rng.random() < 0.7 else 1) * DAY
        out.append((key_of(number), created, wanted,
                    f"pin-{number}" if number % 10_000 == 9_999 else None))
    return out


def read_links(record: Record) -> Links:
    """Metadata ``PIN|NEED,NEED,...``."""
    pin, _, needs = record.metadata.decode().partition("|")
    return Links(tuple(k for k in needs.split(",") if k), pin or None, record.key)


def table_pass(records: list[tuple[str, int, tuple[str, ...], str | None]]
               ) -> tuple[int, int]:
    """Fill a record table and plan; returns how many records expire and the table's
    size on disk (bytes)."""
    publisher = new_publisher("plan-1")[0].public
    with RecordTable() as table:
        table.begin()
        for key, created, wanted, pin in records:
            metadata = f"{pin or ''}|{','.join(wanted)}".encode()
            rec = Record(key, publisher, metadata, Manifest("isa_l_rs_cauchy", 4, 2, (
                ChunkRef(key.encode(), key.encode(), 1, 1),)), created, digest=key.encode())
            table.add(key, rec, T0, {})
            note_links(table, rec, read_links)
        table.commit()
        plan = plan_expiry(table, T0, MAX_AGE, None, closure=True)
        return len(plan.expiring), table.disk_bytes()


def memory_pass(records: list[tuple[str, int, tuple[str, ...], str | None]]) -> int:
    """The same decision in dicts: needs per key, a breadth-first walk."""
    needs = {key: list(wanted) for key, _, wanted, _ in records}
    due = {key: created < T0 - MAX_AGE for key, created, _, _ in records}
    kept = {key for key, _, _, pin in records if pin is not None or not due[key]}
    queue = deque(kept)
    while queue:
        for need in needs[queue.popleft()]:
            if need not in kept:
                kept.add(need)
                queue.append(need)
    return sum(1 for key in needs if due[key] and key not in kept)


def measure(name: str, size: int, needs: int) -> None:
    """Run one pass in this interpreter and print its figures as JSON."""
    records = synthetic(size, needs)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cpu = time.process_time()
    expiring, disk = table_pass(records) if name == "table" else (memory_pass(records), 0)
    cpu = time.process_time() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"cpu": cpu, "rss_growth": rss - base_rss,
                      "expiring": expiring, "disk": disk}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,400000,1000000")
    parser.add_argument("--needs", type=int, default=8)
    parser.add_argument("--measure", choices=PASSES, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.size, args.needs)
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for name in PASSES:
            out = subprocess.run([sys.executable, __file__, "--measure", name, "--size",
                                  str(size), "--needs", str(args.needs)],
                                 capture_output=True, text=True, check=True)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((size, name, figures))
            print(f"{size} {name}: {figures}", file=sys.stderr)
    for size in {size for size, _, _ in rows}:
        a, b = (f["expiring"] for s, _, f in rows if s == size)
        assert a == b, f"{size}: the table expires {a} records, the walk in memory {b}"
    print(f"{args.needs} needs a record; CPU seconds and growth of the peak RSS during "
          "the pass (the synthetic records themselves are built before)\n")
    print("| records | pass | CPU-s | RSS growth MB | table on disk MB | expiring |")
    print("|---:|---|---:|---:|---:|---:|")
    for size, name, f in rows:
        disk = f"{f['disk'] / 1e6:.0f}" if name == "table" else "-"
        print(f"| {size} | {name} | {f['cpu']:.1f} | {f['rss_growth'] / 1e6:.1f} | {disk} | "
              f"{f['expiring']} |")


if __name__ == "__main__":
    main()

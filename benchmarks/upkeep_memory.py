"""Memory of audit, gc and repair as the network grows: real nodes, real records.

Usage: python benchmarks/upkeep_memory.py [--sizes 1000,4000,16000] [--nodes 6]

Starts ``--nodes`` local nodes (2-of-1), then grows the network in steps to
each size of ``--sizes`` records (4 chunks of 1 KiB each, so 12 shards a
record), writing shards to their homes and records to their windows
directly through the node API.  At each size, every pass runs in a fresh
interpreter under ``tracemalloc`` and reports its peak of Python heap (MB) and
CPU seconds:

* ``hold-all``: the reference that grows with the network: the record scan
  with every scanned key kept in memory (what the inventory repair, pins and
  gc's record expiry used before held: every record and copy);
* ``audit``: :func:`~storage_network.upkeep.audit.audit_network` (record scan
  and page-by-page shard walks into one bottom-k sketch per node);
* ``sweep``: gc's shard sweep alone (a dry run, every stripe live), walking
  every node's shards page by page;
* ``gc``: a whole ``collect_garbage`` dry run with a link reader (each record
  needs three earlier ones, so the closure is walked): the scan into the
  record table on disk, the expiry plan and the sweep;
* ``repair``: a whole ``repair_network`` dry run (the scan into the record
  table, every stripe located in batches, every record's window checked).

Prints one table (Markdown); ``growth`` is each peak over its peak at the
smallest size; ``peak RSS`` is the whole process (interpreter, imports and
memory outside the Python heap, such as SQLite's page cache).  Not part of
the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from nixshard.localnet import LocalNetwork, new_publisher
from storage_network import NetworkClient
from storage_network.coding.codec import StripeCodec
from storage_network.config import Network
from storage_network.network_map.source import read_network
from storage_network.nodes import listing_pages
from storage_network.nodes.placement import chunk_homes, record_window
from storage_network.upkeep.audit import audit_network
from storage_network.upkeep.gc import collect_garbage
from storage_network.upkeep.gc_report import GcReport
from storage_network.upkeep.record_scan import RecordScan
from storage_network.upkeep.repair import repair_network
from storage_network.upkeep.shard_sweep import sweep_shards
from storage_network.wire.manifest import make_manifest
from storage_network.wire.record import Record, seal_record
from storage_network.wire.stripe import shard_id
from storage_network.wire.write_auth import Publisher, parse_publisher_secret

CHUNKS = 4
NEEDS_BACK = (1, 7, 31)
"""Each record needs the records written this many before it."""
CHUNK_BYTES = 1024
PASSES = ("hold-all", "audit", "sweep", "gc", "repair")
ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"


def record_key(number: int) -> str:
    rng = random.Random(number)
    return "".join(rng.choice(ALPHABET) for _ in range(32))


async def grow(network: Network, publisher: Publisher, first: int, last: int) -> None:
    """Write records ``first`` .. ``last - 1`` with their shards."""
    codec = StripeCodec(network.k, network.m, network.codec, network.zstd_level)
    n = network.k + network.m
    limit = asyncio.Semaphore(32)
    async with NetworkClient(network, timeout=60.0) as net:

        async def put(node_id: str, key: str, data: bytes) -> None:
            async with limit:
                await net.nodes[node_id].put_record(key, data, publisher)

        for start in range(first, last, 500):
            shards: dict[str, list[tuple[str, bytes]]] = {}
            records = []
            for number in range(start, min(start + 500, last)):
                refs = []
                for _ in range(CHUNKS):
                    chunk = codec.encode(os.urandom(CHUNK_BYTES))
                    refs.append(chunk.ref)
                    for index, node in enumerate(chunk_homes(network, chunk.ref.chunk_id, n)):
                        shards.setdefault(node.id, []).append(
                            (shard_id(chunk.ref.root, index), chunk.bodies[index]))
                key = record_key(number)
                manifest = make_manifest(network.codec, network.k, network.m, refs)
                records.append((key, seal_record(publisher, key, bench_metadata(number),
                                                 manifest)))
            await asyncio.gather(*(net.nodes[node_id].put_shards(batch, publisher)
                                   for node_id, batch in shards.items()))
            await asyncio.gather(*(put(node.id, key, data) for key, data in records
                                   for node in record_window(network, key)
                                   [:network.record_replicas]))


def bench_metadata(number: int) -> bytes:
    """A record's metadata: ``needs=`` three earlier records (gc's closure walks them)."""
    return ("needs=" + ",".join(record_key(number - back) for back in NEEDS_BACK
                                if number >= back)).encode()


@dataclass(frozen=True)
class BenchLinks:
    """What a benchmark record needs (:data:`~storage_network.upkeep.gc.LinkReader`)."""

    needs: tuple[str, ...]
    pin: str | None
    label: str


def bench_links(record: Record) -> BenchLinks:
    """Reads :func:`bench_metadata`."""
    text = record.metadata.decode()
    return BenchLinks(tuple(k for k in text.removeprefix("needs=").split(",") if k), None,
                      record.key)


class Everything(set[bytes]):
    """Every stripe is live (the sweep deletes nothing)."""

    def __contains__(self, item: object) -> bool:
        return True


async def run_pass(name: str, network: Network, publisher: Publisher) -> None:
    async with NetworkClient(network, timeout=120.0) as net:
        if name == "hold-all":
            held = {item.key: item async for item in RecordScan(net)}
            assert held
        elif name == "audit":
            report = await audit_network(net, rng=random.Random(1))
            assert report.records
        elif name == "sweep":
            gc = GcReport(started=time.time(), dry_run=True, grace=0.0)
            await sweep_shards(net, publisher, gc, Everything(), asyncio.Semaphore(16))
        elif name == "repair":
            repaired = await repair_network(net, publisher, dry_run=True)
            assert repaired.stripes
        else:
            await collect_garbage(net, publisher, max_age=30 * 86400.0, max_idle=None,
                                  grace=86400.0, dry_run=True, links=bench_links)


def measure(name: str, network_file: str, publisher_file: str, page: int) -> None:
    """Run one pass in this interpreter and print its figures as JSON."""
    listing_pages.PAGE = page
    network = read_network(network_file, os.environ)
    publisher = parse_publisher_secret(Path(publisher_file).read_text())
    tracemalloc.start()
    cpu = time.process_time()
    asyncio.run(run_pass(name, network, publisher))
    _, peak = tracemalloc.get_traced_memory()
    print(json.dumps({"peak": peak, "cpu": time.process_time() - cpu,
                      "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000,16000")
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--page", type=int, default=1000,
                        help="listing names per page (the product's default is "
                             f"{listing_pages.PAGE}; smaller shows the plateau sooner)")
    parser.add_argument("--measure", choices=PASSES, help=argparse.SUPPRESS)
    parser.add_argument("--network", help=argparse.SUPPRESS)
    parser.add_argument("--publisher", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.network, args.publisher, args.page)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    publisher, secret_text = new_publisher("bench-1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, LocalNetwork(Path(tmp), publisher) as local:
        network = local.start_nodes(args.nodes, 2, 1)
        secret = Path(tmp) / "publisher.key"
        secret.write_text(secret_text)
        done = 0
        for size in sizes:
            asyncio.run(grow(network, publisher, done, size))
            done = size
            for name in PASSES:
                out = subprocess.run(
                    [sys.executable, __file__, "--measure", name, "--network",
                     str(local.network_file), "--publisher", str(secret),
                     "--page", str(args.page)],
                    capture_output=True, text=True, check=True, env={**os.environ, **local.env})
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append((size, name, figures))
                print(f"{size} records {name}: {figures['peak'] / 1e6:.1f} MB peak, "
                      f"{figures['cpu']:.1f} CPU-s", file=sys.stderr)
    base = {name: figures["peak"] for size, name, figures in rows if size == sizes[0]}
    print(f"{args.nodes} nodes, 2-of-1, {CHUNKS} chunks a record ({CHUNKS * 3} shards), "
          f"listing pages of {args.page}; peak Python heap (tracemalloc) of each pass, "
          "and the peak RSS of its process\n")
    print("| records | shards | pass | peak MB | growth | peak RSS MB | CPU-s |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for size, name, figures in rows:
        print(f"| {size} | {size * CHUNKS * 3} | {name} | {figures['peak'] / 1e6:.1f} | "
              f"{figures['peak'] / base[name]:.2f}x | {figures['maxrss'] / 1e6:.1f} | "
              f"{figures['cpu']:.1f} |")


if __name__ == "__main__":
    main()

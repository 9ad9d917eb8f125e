"""Repair and audit figures on a local network (8 nodes, 4-of-6).

Usage: python benchmarks/durability_figures.py [--tree /usr/lib/python3.11] [--runs 3] [--jobs 8]

Stores the NAR of the tree (nixshard's own NAR writer, no Nix needed), then
per run: kills 2 nodes and deletes their data, times ``repair_network`` (MB
of shard bodies rebuilt and written per second, and MB of NAR the stripes
cover per second), restarts the 2 nodes empty and times one audit of the
whole network.  Prints medians.  Not part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from nix_formats.nar import dump_path
from nixshard.localnet import LocalNetwork, new_publisher
from storage_network import NetworkClient, publish_record, store_payload
from storage_network.upkeep.audit import audit_network
from storage_network.upkeep.repair import DEFAULT_JOBS, repair_network

KEY = "0" * 32


async def store(local: LocalNetwork, tree: str) -> int:
    assert local.network is not None
    async with NetworkClient(local.network) as net:
        manifest, stats = await store_payload(net, local.publisher, dump_path(tree))
        await publish_record(net, local.publisher, KEY, b"bench", manifest)
    return stats.payload_bytes


async def repair(local: LocalNetwork, jobs: int) -> tuple[float, int]:
    assert local.network is not None
    async with NetworkClient(local.network) as net:
        started = time.perf_counter()
        report = await repair_network(net, local.publisher, jobs=jobs)
        seconds = time.perf_counter() - started
    assert report.complete, report.to_json()
    return seconds, report.bytes_written


async def audit(local: LocalNetwork) -> tuple[float, int]:
    assert local.network is not None
    async with NetworkClient(local.network) as net:
        started = time.perf_counter()
        report = await audit_network(net, rng=random.Random(1))
        seconds = time.perf_counter() - started
    return seconds, sum(row.sampled for row in report.nodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default="/usr/lib/python3.11")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="repair --jobs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            LocalNetwork(Path(tmp), new_publisher("bench-1")[0]) as local:
        local.start_nodes(8, 4, 2)
        nar_bytes = asyncio.run(store(local, args.tree))
        rebuilt, rates, covered, audits = [], [], [], []
        for run in range(args.runs):
            victims = [1 + (2 * run) % 8, 2 + (2 * run) % 8]
            for number in victims:
                local.nodes[number - 1].kill()
                shutil.rmtree(local.node_dir(number) / "shards")
            seconds, written = asyncio.run(repair(local, args.jobs))
            rebuilt.append(written)
            rates.append(written / seconds / 1e6)
            covered.append(nar_bytes / seconds / 1e6)
            for number in victims:
                local.restart_node(number)
            seconds, sampled = asyncio.run(audit(local))
            audits.append((seconds, sampled))
        print(f"NAR {nar_bytes / 1e6:.1f} MB, 8 nodes, 4-of-6, {args.runs} runs (medians)")
        print(f"repair after losing 2 nodes: {statistics.median(rebuilt) / 1e6:.1f} MB of shards "
              f"rebuilt at {statistics.median(rates):.1f} MB/s "
              f"({statistics.median(covered):.1f} MB/s of NAR covered)")
        print(f"audit of all 8 nodes: {statistics.median(a[1] for a in audits)} shards "
              f"challenged in {statistics.median(a[0] for a in audits):.2f} s")


if __name__ == "__main__":
    main()

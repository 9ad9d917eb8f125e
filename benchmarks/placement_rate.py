"""Placement cost per chunk: rendezvous hashing against placement groups.

Usage: python benchmarks/placement_rate.py [--chunks 20000] [--runs 3]

Networks of 10 nodes (each its own operator, 4-of-6), 1,000 and 10,000 nodes
(100 operators, 16-of-40); no node process runs, only placement is measured.
Per network and scheme: µs per chunk of ``chunk_homes(network, chunk_id, n)``
(the homes of a random 32-byte chunk id) and of ``chunk_ranking`` (what readers
and pushers hold), the median over ``--runs`` runs; for groups in steady state
(every group computed); and the one-time cost per network, seconds: a fresh
``GroupPlacement`` and ``warm()`` (every group computed; the first use of one
group costs that / groups), the median over ``--runs``.  Rendezvous
ranks every node per chunk, so it is timed over fewer chunks.  Prints a
markdown table.  Not part of the test run.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage_network.config import Network, NodeInfo  # noqa: E402
from storage_network.nodes.placement import (  # noqa: E402
    PREFIX_MIN,
    chunk_homes,
    chunk_ranking,
    group_placement,
)
from storage_network.nodes.placement_groups import GroupPlacement  # noqa: E402

SETUPS = ((10, 0, 4, 2), (1_000, 100, 16, 24), (10_000, 100, 16, 24))  # nodes, operators, k, m


def network(nodes: int, operators: int, k: int, m: int, placement: str) -> Network:
    """``nodes`` nodes, round-robin over ``operators`` (0: each node its own)."""
    infos = tuple(NodeInfo(f"node-{i}", f"http://127.0.0.1:{10000 + i}",
                           operator=f"op-{i % operators}" if operators else "")
                  for i in range(nodes))
    return Network(nodes=infos, k=k, m=m, placement=placement).validate()


def per_chunk_us(call: Callable[[bytes], object], ids: list[bytes], runs: int) -> float:
    """Median over ``runs`` of the µs per call of ``call`` over ``ids``."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        for chunk_id in ids:
            call(chunk_id)
        times.append((time.perf_counter() - began) / len(ids) * 1e6)
    return statistics.median(times)


def warm_seconds(net: Network) -> float:
    """Seconds to build a fresh :class:`GroupPlacement` of ``net`` and compute every group."""
    began = time.perf_counter()
    GroupPlacement(net.nodes, max(PREFIX_MIN, 2 * net.n)).warm()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000, help="chunk ids timed (groups)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(1)
    ids = [rng.randbytes(32) for _ in range(args.chunks)]
    print("| nodes | operators | k-of-n | scheme | homes µs/chunk | ranking µs/chunk "
          "| one-time s/network |")
    print("|---:|---:|---|---|---:|---:|---:|")
    for nodes, operators, k, m in SETUPS:
        for scheme in ("rendezvous", "groups"):
            net = network(nodes, operators, k, m, scheme)
            once = 0.0
            sample = ids
            if scheme == "groups":
                once = statistics.median(warm_seconds(net) for _ in range(args.runs))
                group_placement(net).warm()
            else:
                sample = ids[:max(20, min(len(ids), 200_000 // nodes))]
            homes = per_chunk_us(functools.partial(chunk_homes, net, n=k + m), sample, args.runs)
            ranks = per_chunk_us(functools.partial(chunk_ranking, net), sample, args.runs)
            print(f"| {nodes:,} | {operators or nodes:,} | {k}-of-{k + m} | {scheme} "
                  f"| {homes:.1f} | {ranks:.1f} | {once:.2f} |")


if __name__ == "__main__":
    main()

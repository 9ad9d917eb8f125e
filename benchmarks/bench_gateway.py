"""bench.py's ``gateway`` section: the bars of issue 16, in one run.

- cold GET CPU: one GET of the gcc ``.nar.zst`` through a fresh ``nixshard serve
  --workers 1`` (empty cache), the gateway's CPU-seconds per GB of body
  (``/proc``, workers included); bar <= 1.5 CPU-s/GB.  No reference.
- narinfo per request: ``wrk -t1 -c32`` on a hit and a 404 of one gateway worker
  against a bare aiohttp handler answering the same bytes
  (``benchmarks/narinfo_rate.py``), requests/s (bar >= 0.8x the bare handler)
  and µs of CPU per request.
- workers: narinfo hits with ``wrk -t2 -c64`` on ``--workers 2`` against
  ``--workers 1`` (on 2 cores wrk itself takes one of them).
- distant nodes: every node behind a link emulator (40 ± 10 ms, 12.5 MB/s), then
  the same with m = 2 nodes 4x slower; cold GET MB/s against the floor
  (``benchmarks/distant_nodes.py``); bar >= 0.8x the floor for the first.

Runs alternate ours and the reference where there is one.
"""

from __future__ import annotations

import dataclasses
import statistics

from benchmarks.bench_measure import MB, run_wrk
from benchmarks.bench_private import cold_get
from benchmarks.bench_results import Bar, Row
from benchmarks.bench_run import Bench
from benchmarks.distant_nodes import (
    CAP,
    JITTER_MS,
    RTT_MS,
    SLOW,
    SLOW_NODES,
    EmulatorThread,
    floor_seconds,
    shard_bytes,
)
from benchmarks.distant_nodes import (
    cold_get as far_cold_get,
)
from benchmarks.link_emulator import LinkParams
from benchmarks.narinfo_rate import ABSENT_HASH, fetch, measure, start_bare
from nixshard.localnet import LocalNetwork
from storage_network.config import NodeInfo, load_network, write_network

GB = 1000 * MB
ONE = ("--workers", "1")


def narinfo_rows(bench: Bench, net: LocalNetwork) -> None:
    """Hit and 404 of one worker against the bare handler; 2 workers against 1."""
    hash_part = bench.paths["gcc"].split("/")[-1].split("-")[0]
    one = net.start_gateway("narinfo-one", extra=ONE)
    two = net.start_gateway("narinfo-two", extra=("--workers", "2"))
    hit, miss = f"/{hash_part}.narinfo", f"/{ABSENT_HASH}.narinfo"
    bare = start_bare(bench.work, hash_part, fetch(one.url + hit), fetch(one.url + miss))
    assert one.proc is not None and two.proc is not None and bare.proc is not None
    secs = bench.args.wrk_seconds
    got: dict[str, list[float]] = {k: [] for k in (
        "hit", "bare hit", "404", "bare 404", "hit us", "bare hit us", "404 us", "bare 404 us",
        "two", "one")}
    try:
        for run in range(bench.args.runs):
            for kind, path in (("hit", hit), ("404", miss)):
                ours = measure(one.url + path, one.proc.pid, secs)
                ref = measure(bare.url + path, bare.proc.pid, secs)
                got[kind].append(ours.rps)
                got[f"bare {kind}"].append(ref.rps)
                got[f"{kind} us"].append(ours.cpu_us)
                got[f"bare {kind} us"].append(ref.cpu_us)
            got["two"].append(run_wrk(two.url + hit, secs, None, threads=2,
                                      connections=64).rps)
            got["one"].append(run_wrk(one.url + hit, secs, None, threads=2,
                                      connections=64).rps)
            print(f"  narinfo run {run + 1}: hit {got['hit'][-1]:.0f} req/s (bare "
                  f"{got['bare hit'][-1]:.0f}), 404 {got['404'][-1]:.0f} (bare "
                  f"{got['bare 404'][-1]:.0f}); 2 workers {got['two'][-1]:.0f} vs 1 "
                  f"{got['one'][-1]:.0f}", flush=True)
    finally:
        bare.stop()
        bench.drop_gateway(net, one)
        bench.drop_gateway(net, two)
    bench.rows += [
        Row("narinfo hit, 1 worker (ref: bare aiohttp handler)", "req/s", got["hit"],
            got["bare hit"], Bar("ratio_min", 0.8)),
        Row("narinfo 404, 1 worker (ref: bare aiohttp handler)", "req/s", got["404"],
            got["bare 404"], Bar("ratio_min", 0.8)),
        Row("narinfo hit, CPU per request (ref: bare aiohttp handler)", "µs",
            got["hit us"], got["bare hit us"]),
        Row("narinfo 404, CPU per request (ref: bare aiohttp handler)", "µs",
            got["404 us"], got["bare 404 us"]),
        Row("narinfo hit, wrk -t2 -c64, 2 workers (ref: 1 worker)", "req/s", got["two"],
            got["one"]),
    ]


def distant_rows(bench: Bench) -> None:
    """Cold GET of gcc from 6 distant nodes (all capped; then 2 of them slower)."""
    net = bench.new_network("distant")
    bench.push(net, [bench.paths["gcc"]])
    stored = shard_bytes(net)
    emulators = EmulatorThread()
    try:
        network = load_network(net.network_file)
        far = net.root / "network-distant.toml"
        write_network(dataclasses.replace(network, nodes=tuple(
            NodeInfo(n.id, f"http://127.0.0.1:{emulators.add(n.url).port}")
            for n in network.nodes)), far)
        capped = LinkParams(RTT_MS, JITTER_MS, down_rate=CAP)
        slow = LinkParams(RTT_MS, JITTER_MS, down_rate=SLOW)
        n = len(network.nodes)
        configs = {"even": [capped] * n,
                   "slow": [capped] * (n - SLOW_NODES) + [slow] * SLOW_NODES}
        speeds: dict[str, list[float]] = {k: [] for k in configs}
        floors: dict[str, float] = {}
        for run in range(bench.args.runs):
            for name, links in configs.items():
                emulators.configure(links)
                seconds, size, _ = far_cold_get(net.root, f"far-{name}-{run}", far,
                                            bench.paths["gcc"])
                speeds[name].append(size / MB / seconds)
                rates = [p.down_rate for p in links]
                floors[name] = size / MB / floor_seconds(stored, rates, network.k, n)
                print(f"  distant run {run + 1} {name}: {speeds[name][-1]:.1f} MB/s "
                      f"(floor {floors[name]:.1f})", flush=True)
    finally:
        emulators.close()
        bench.drop_network(net)
    bench.rows += [
        Row(f"cold GET gcc, 6 nodes {RTT_MS:.0f} ± {JITTER_MS:.0f} ms at {CAP / MB:.1f} MB/s "
            "(ref: floor)", "MB/s", speeds["even"], [floors["even"]], Bar("ratio_min", 0.8)),
        Row(f"cold GET gcc, the same with {SLOW_NODES} nodes at {SLOW / MB:.3f} MB/s "
            "(ref: floor)", "MB/s", speeds["slow"], [floors["slow"]]),
    ]


def bench_gateway(bench: Bench) -> None:
    """The section: cold GET CPU, narinfo per request and workers, distant nodes."""
    net = bench.new_network("gateway")
    bench.push(net, [bench.paths["gcc"]])
    rates, cpus = [], []
    for run in range(bench.args.runs):
        rate, cpu = cold_get(bench, net, f"cold-{run}", ONE)
        rates.append(rate)
        cpus.append(cpu)
        print(f"  cold GET run {run + 1}: {rate:.0f} MB/s, {cpu:.2f} CPU-s/GB", flush=True)
    bench.rows += [
        Row("GET gcc NAR cold, 1 worker, gateway CPU", "CPU-s/GB", cpus,
            bar=Bar("abs_max", 1.5)),
        Row("GET gcc NAR cold, 1 worker, body", "MB/s", rates),
    ]
    narinfo_rows(bench, net)
    bench.drop_network(net)
    distant_rows(bench)
    bench.details.append(
        "gateway: cold GET CPU median "
        f"{statistics.median(cpus):.2f} CPU-s/GB of .nar.zst (user + system of the "
        "gateway and its workers from /proc, during the GET only)")

"""Cold GET from distant nodes: every node behind a user-space link emulator.

    python3 benchmarks/distant_nodes.py [--runs 2] [--tree /usr/lib/gcc] [--keep]
                                        [--only NAME,...] [--serve-arg=--prefetch=128 ...]

The set-up: a key from ``nix-store --generate-binary-cache-key``; a copy of ``--tree``
(default /usr/lib/gcc, ~125 MB NAR) added with ``nix-store --add`` as
``nixshard-distant-tree`` (deleted at the end unless ``--keep``); a local network of
6 nodes, 4-of-6 (``LocalNetwork.start_nodes(6, 4, 2)``) and ``nixshard push`` of that
path.  Then a second network file, the same but each node's URL pointing at its own
:class:`benchmarks.link_emulator.LinkEmulator` (all six run in a thread of this
process, on an event loop of their own).  Each measure is one GET (curl) of the
path's ``.nar.zst`` from a fresh ``nixshard serve`` (default options, an empty cache
dir and ``--cache-max-bytes 0``): MB/s of body, and the gateway's CPU-seconds during
the GET (``/proc/PID/stat``).  The configurations, alternating within each run:

- direct: the gateway on the first network file (no emulator);
- latency: every node 40 ± 10 ms away (round trip), no cap;
- latency + cap: also capped at 12.5 MB/s (100 Mbit/s) node->gateway;
- latency + cap, m slow: the same with m = 2 nodes (node-5, node-6) 4x slower (3.125 MB/s).

The floor of a capped configuration is the shortest time in which the nodes, each
sending at its cap, can deliver the k-of-n shards of every chunk.  Node i holds
``S_i`` bytes of shards (``shards/`` on disk after the push of this one path); a cold
GET needs ``k/n`` of all shard bytes; a node cannot send more than it holds, so
``T_floor`` solves ``sum_i min(S_i, rate_i * T) = k/n * sum_i S_i``.  With every node
at the same cap and S_i equal this is ``compressed size / (n * cap)``: the busiest
node sends its share ``compressed / n`` (data shards are spread over all n nodes).
Also printed: the cruder bound in which every node sends every shard it holds,
``(n/k * compressed / n) / cap``.  Floor MB/s = compressed size / T_floor.

Prints a markdown table (median over ``--runs`` and each sample).  Nothing is
asserted; not part of pytest.  Numbers on a shared 2-core machine are indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_data import add_to_store, nar_sizes  # noqa: E402
from benchmarks.bench_env import nix_env  # noqa: E402
from benchmarks.bench_measure import (  # noqa: E402
    MB,
    BenchError,
    cpu_seconds,
    narinfo_fields,
    timed_get,
)
from benchmarks.bench_run import remove_tree  # noqa: E402
from benchmarks.link_emulator import LinkEmulator, LinkParams, mbps_to_bytes  # noqa: E402
from nixshard.localnet import LocalNetwork, ManagedProcess, free_port  # noqa: E402
from storage_network.config import NodeInfo, load_network, write_network  # noqa: E402
from storage_network.wire.write_auth import parse_publisher_secret  # noqa: E402

N, K, M = 6, 4, 2
RTT_MS, JITTER_MS = 40.0, 10.0
CAP = mbps_to_bytes(100)  # 12.5 MB/s
SLOW = CAP / 4  # 3.125 MB/s
SLOW_NODES = 2  # the last m nodes
TREE_NAME = "nixshard-distant-tree"


@dataclasses.dataclass
class Config:
    """One configuration: a name, the link of each node (None: direct), the caps."""

    name: str
    links: list[LinkParams] | None

    @property
    def rates(self) -> list[float]:
        """Each node's node->gateway cap, bytes/s (0: none)."""
        return [p.down_rate for p in self.links] if self.links else [0.0] * N


def configs() -> list[Config]:
    """The four configurations, in the order they run."""
    latency = LinkParams(RTT_MS, JITTER_MS)
    capped = LinkParams(RTT_MS, JITTER_MS, down_rate=CAP)
    slow = LinkParams(RTT_MS, JITTER_MS, down_rate=SLOW)
    return [
        Config("direct", None),
        Config(f"latency {RTT_MS:.0f} ± {JITTER_MS:.0f} ms", [latency] * N),
        Config(f"latency + cap {CAP / MB:.1f} MB/s", [capped] * N),
        Config(f"latency + cap, {SLOW_NODES} nodes at {SLOW / MB:.3f} MB/s",
               [capped] * (N - SLOW_NODES) + [slow] * SLOW_NODES),
    ]


class EmulatorThread:
    """The link emulators, on an event loop in a thread of their own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.emulators: list[LinkEmulator] = []

    def call(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run a coroutine on the emulators' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(60)

    def add(self, target_url: str) -> LinkEmulator:
        """Start an emulator in front of the node at ``target_url`` (``http://host:port``)."""
        host, port = target_url.split("//", 1)[1].rsplit(":", 1)
        emulator = LinkEmulator(free_port(), host, int(port), seed=len(self.emulators) + 1)
        self.call(emulator.start)
        self.emulators.append(emulator)
        return emulator

    def down_bytes(self) -> list[int]:
        """Each emulator's :attr:`LinkEmulator.down_bytes`, in node order."""
        return [emulator.down_bytes for emulator in self.emulators]

    def configure(self, links: list[LinkParams]) -> None:
        """Give emulator i the link ``links[i]`` (for connections opened from now on)."""
        async def apply() -> None:
            for emulator, params in zip(self.emulators, links, strict=True):
                emulator.configure(params)

        self.call(apply)

    def traces(self) -> list[tuple[list[tuple[float, int]], list[float]]]:
        """Per emulator, copies of its node->client pieces ``(time, bytes)`` and its
        client->node piece times since the last :meth:`configure`."""
        async def copy() -> list[tuple[list[tuple[float, int]], list[float]]]:
            return [(list(e.down_trace), list(e.requests)) for e in self.emulators]

        result: list[tuple[list[tuple[float, int]], list[float]]] = self.call(copy)
        return result

    def close(self) -> None:
        """Stop every emulator and the loop."""
        for emulator in self.emulators:
            self.call(emulator.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def shard_bytes(net: LocalNetwork) -> list[int]:
    """st_size of every file under each node's ``shards/``, in node order."""
    sizes = []
    for number in range(1, N + 1):
        root = net.node_dir(number) / "shards"
        sizes.append(sum(p.stat().st_size for p in root.rglob("*") if p.is_file()))
    return sizes


def floor_seconds(stored: list[int], rates: list[float], k: int, n: int) -> float:
    """Shortest time to deliver ``k/n`` of all shard bytes, node i sending at most
    ``stored[i]`` bytes at ``rates[i]`` bytes/s: solves
    ``sum_i min(stored_i, rate_i * T) = k/n * sum(stored)`` by bisection."""
    need = k / n * sum(stored)

    def sent(t: float) -> float:
        return sum(min(s, r * t) for s, r in zip(stored, rates, strict=True))

    low, high = 0.0, max(s / r for s, r in zip(stored, rates, strict=True))
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if sent(mid) < need else (low, mid)
    return high


def start_gateway(root: Path, name: str, network_file: Path, extra: tuple[str, ...] = ()
                  ) -> ManagedProcess:
    """A fresh ``nixshard serve`` on ``network_file``: default options (but ``extra``),
    an empty cache dir and ``--cache-max-bytes 0``."""
    port = free_port()
    gateway = ManagedProcess(
        name, ["serve", "--network", str(network_file), "--listen", f"127.0.0.1:{port}",
               "--cache-dir", str(root / f"{name}-cache"), "--cache-max-bytes", "0", *extra],
        f"http://127.0.0.1:{port}", root / f"{name}.log")
    return gateway.start().wait_ready()


def cold_get(root: Path, name: str, network_file: Path, store_path: str,
             extra: tuple[str, ...] = ()) -> tuple[float, int, float]:
    """One cold GET of the ``.nar.zst`` from a fresh gateway (options ``extra``):
    seconds, body bytes, the gateway's CPU-seconds during the GET (narinfo fetched
    first, not counted)."""
    gateway = start_gateway(root, name, network_file, extra)
    try:
        url = f"{gateway.url}/{narinfo_fields(gateway.url, store_path)['URL']}"
        assert gateway.proc is not None
        cpu = cpu_seconds(gateway.proc.pid)
        seconds, size = timed_get(url)
        cpu = cpu_seconds(gateway.proc.pid) - cpu
        return seconds, size, cpu
    finally:
        gateway.stop()
        remove_tree(root / f"{name}-cache")


GAP_SECONDS = 0.005
"""A pause between two pieces of a capped link longer than this is idle time (a 16 KiB
piece takes 1.3 ms at 12.5 MB/s)."""


def idle_profile(traces: list[tuple[list[tuple[float, int]], list[float]]],
                 rates: list[float]) -> str:
    """Where each capped link was idle during one GET, from the emulators' traces.

    The GET spans the first request piece at any node to the last answer piece of
    any node.  Per node: ``head`` (until its first answer piece), ``tail`` (after its
    last, while others still send), and the pauses between pieces longer than
    :data:`GAP_SECONDS`, split by whether a request piece from the gateway reached the
    emulator during the pause ("no request outstanding": the link waited for the
    gateway's next request; then ``react``: from the pause's start to that request
    piece) or not (a request was outstanding: the node or the path was slow).
    Medians over the nodes, milliseconds.
    """
    starts = [reqs[0] for _, reqs in traces if reqs]
    ends = [down[-1][0] for down, _ in traces if down]
    if not starts or not ends:
        return "no trace"
    start, end = min(starts), max(ends)
    rows = []
    for (down, reqs), rate in zip(traces, rates, strict=True):
        if not down:
            continue
        waiting = busy_gaps = 0.0
        reacts = []
        count = 0
        for (t0, size), (t1, _) in zip(down, down[1:], strict=False):
            pause = t1 - t0 - size / rate
            if t1 - t0 <= GAP_SECONDS or pause <= 0:
                continue
            count += 1
            asked = [u for u in reqs if t0 < u < t1]
            if asked:
                waiting += pause
                reacts.append(asked[0] - t0)
            else:
                busy_gaps += pause
        rows.append((down[0][0] - start, end - down[-1][0], waiting, busy_gaps, count,
                     statistics.median(reacts) if reacts else 0.0))
    span = end - start

    def med(i: int) -> float:
        return 1000 * statistics.median(r[i] for r in rows)

    return (f"span {1000 * span:.0f} ms; per node (median): head {med(0):.0f} ms, "
            f"tail {med(1):.0f} ms, pauses waiting for a request {med(2):.0f} ms, "
            f"pauses with a request outstanding {med(3):.0f} ms "
            f"({statistics.median(r[4] for r in rows):.0f} pauses; from a pause's start to "
            f"the next request piece {med(5):.0f} ms)")


def table(rows: list[tuple[Config, list[float], list[float], float, list[float]]], size: int,
          cruder: float) -> str:
    """The markdown table: one row per configuration (node links busy: the median over
    the nodes of bytes sent / (cap x GET seconds), median over the runs)."""
    lines = ["| configuration | cold GET MB/s (median) | samples | floor MB/s | % of floor "
             "| % of all-shards bound | node links busy | gateway CPU-s (median) | CPU-s/GB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for config, speeds, cpus, floor, busy in rows:
        median = statistics.median(speeds)
        cpu = statistics.median(cpus)
        capped = all(config.rates)
        lines.append(
            f"| {config.name} | {median:.1f} | {', '.join(f'{s:.1f}' for s in speeds)} | "
            + (f"{floor:.1f} | {100 * median / floor:.0f}% | "
               if capped else "- | - | ")
            + (f"{100 * median / cruder:.0f}% | " if capped and config.rates == [CAP] * N
               else "- | ")
            + (f"{100 * statistics.median(busy):.0f}% | " if busy else "- | ")
            + f"{cpu:.2f} | {cpu / (size / 1e9):.2f} |")
    return "\n".join(lines)


def main() -> None:
    """Set up, measure, print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="GETs per configuration")
    parser.add_argument("--tree", type=Path, default=Path("/usr/lib/gcc"),
                        help="the directory whose NAR is pushed and fetched")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir (logs, node data) and the store path")
    parser.add_argument("--only", default="",
                        help="comma-separated words; run the configurations whose name "
                             "starts with one of them (direct, latency)")
    parser.add_argument("--serve-arg", action="append", default=[],
                        help="an extra option for every nixshard serve (repeatable)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nixshard-distant-"))
    print(f"temp dir {work}", flush=True)
    xdg = work / "xdg"
    xdg.mkdir()
    env = nix_env(xdg)
    store_path = ""
    net: LocalNetwork | None = None
    emulators: EmulatorThread | None = None
    try:
        sk, pk = work / "secret.key", work / "public.key"
        subprocess.run(["nix-store", "--generate-binary-cache-key", "nixshard-distant-1",
                        str(sk), str(pk)], check=True, env=env)
        tree = work / TREE_NAME  # a store path name of this script's own
        shutil.copytree(args.tree, tree, symlinks=True)
        store_path = add_to_store(tree, env)
        remove_tree(tree)
        nar = nar_sizes([store_path], env)[store_path]
        print(f"{args.tree}: {store_path}, NAR {nar / MB:.1f} MB", flush=True)

        net = LocalNetwork(work / "net", parse_publisher_secret(sk.read_text()))
        net.root.mkdir()
        net.start_nodes(N, K, M)
        push = net.run_nixshard("push", "--network", str(net.network_file),
                                "--signing-key", str(sk), "--no-progress", store_path,
                                env=env)
        if push.returncode != 0:
            raise BenchError(f"nixshard push failed:\n{push.stdout[-1500:]}{push.stderr[-1500:]}")
        stored = shard_bytes(net)

        emulators = EmulatorThread()
        network = load_network(net.network_file)
        proxied = tuple(NodeInfo(node.id, f"http://127.0.0.1:{emulators.add(node.url).port}")
                        for node in network.nodes)
        far_file = net.root / "network-distant.toml"
        write_network(dataclasses.replace(network, nodes=proxied), far_file)

        all_configs = [c for c in configs() if not args.only
                       or any(c.name.startswith(w) for w in args.only.split(","))]
        speeds: dict[str, list[float]] = {c.name: [] for c in all_configs}
        cpus: dict[str, list[float]] = {c.name: [] for c in all_configs}
        busy_of: dict[str, list[float]] = {c.name: [] for c in all_configs}
        size = 0
        for run in range(args.runs):
            for number, config in enumerate(all_configs):
                if config.links is not None:
                    emulators.configure(config.links)
                network_file = far_file if config.links else net.network_file
                before = emulators.down_bytes()
                seconds, size, cpu = cold_get(net.root, f"gw-{run}-{number}", network_file,
                                              store_path, tuple(args.serve_arg))
                sent = [b - a for a, b in zip(before, emulators.down_bytes(), strict=True)]
                speeds[config.name].append(size / MB / seconds)
                cpus[config.name].append(cpu)
                busy = ""
                if all(config.rates):
                    use = [b / (rate * seconds) for b, rate in zip(sent, config.rates,
                                                                   strict=True)]
                    busy_of[config.name].append(statistics.median(use))
                    busy = (f"; node links busy {100 * min(use):.0f}-{100 * max(use):.0f}% "
                            f"(sent {', '.join(f'{b / MB:.2f}' for b in sent)} MB)")
                print(f"  run {run + 1} {config.name}: {size / MB / seconds:.1f} MB/s, "
                      f"{seconds:.2f} s, gateway {cpu:.2f} CPU-s{busy}", flush=True)
                if all(config.rates):
                    print(f"    idle: {idle_profile(emulators.traces(), config.rates)}",
                          flush=True)
                time.sleep(0.5)

        rows = []
        for config in all_configs:
            floor = 0.0
            if all(config.rates):
                floor = size / MB / floor_seconds(stored, config.rates, K, N)
            rows.append((config, speeds[config.name], cpus[config.name], floor,
                         busy_of[config.name]))
        cruder = size / MB / ((N / K * size / N) / CAP)
        print()
        print(f"{args.tree}: NAR {nar / MB:.1f} MB, .nar.zst {size / MB:.1f} MB; {N} nodes, "
              f"{K}-of-{N}; shards/ bytes per node (MB): "
              f"{', '.join(f'{s / MB:.2f}' for s in stored)}; runs {args.runs}; "
              f"load {os.getloadavg()[0]:.2f}")
        print("floor: T = the smallest T with sum_i min(S_i, cap_i * T) >= k/n * sum_i S_i "
              "(S_i = shards/ bytes of node i); floor MB/s = compressed / T "
              f"(all at {CAP / MB:.1f} MB/s: ~ compressed / (n * cap) = "
              f"{size / MB / (size / N / CAP):.1f} MB/s)")
        print(f"all-shards bound: (n/k x compressed / n) / cap = {size / MB:.1f} / "
              f"{K} / {CAP / MB:.1f} s -> {cruder:.1f} MB/s")
        print()
        print(table(rows, size, cruder))
    finally:
        if emulators is not None:
            emulators.close()
        if net is not None:
            net.close()
        if args.keep:
            print(f"kept {work}")
        else:
            remove_tree(work)
            if store_path:
                subprocess.run(["nix-store", "--delete", store_path], capture_output=True,
                               env=env, check=False)


if __name__ == "__main__":
    main()

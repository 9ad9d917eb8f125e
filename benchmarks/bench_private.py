"""bench.py's ``private`` section: a private cache against a public one, in the same run.

Both are fresh networks of 6 of our nodes, 4-of-6; the private one says
``private = true`` and its push and gateway hold a cache secret (every chunk
sealed with AES-256-GCM under a keyed chunk id, every record's narinfo and
chunk keys sealed; docs/private-caches.md).  Runs alternate private, public.

- push: ``nixshard push`` of gcc+python, wall seconds and CPU-seconds (user +
  system of the push and its children);
- GET cold: one GET of the gcc ``.nar.zst`` through a fresh gateway (empty
  cache), MB/s of body, and the gateway's CPU-seconds per GB of body (from
  ``/proc/PID/stat`` before and after).  Both gateways run with
  ``--no-read-auth`` (a private gateway requires credentials by default), so the
  rows differ by the sealing alone.

The AEAD itself is measured by ``benchmarks/aead.py``.
"""

from __future__ import annotations

from benchmarks.bench_measure import MB, cpu_seconds, narinfo_fields, timed_get
from benchmarks.bench_results import Row
from benchmarks.bench_run import Bench
from nixshard.localnet import LocalNetwork

GB = 1000 * MB


def cold_get(bench: Bench, net: LocalNetwork, name: str,
             extra: tuple[str, ...] = ("--no-read-auth",)) -> tuple[float, float]:
    """MB/s of one GET of the gcc NAR through a fresh gateway on ``net`` (options
    ``extra``), and the gateway's CPU-seconds per GB of body (its workers included)."""
    gateway = net.start_gateway(name, extra=extra)
    try:
        assert gateway.proc is not None
        url = f"{gateway.url}/{narinfo_fields(gateway.url, bench.paths['gcc'])['URL']}"
        before = cpu_seconds(gateway.proc.pid)
        seconds, size = timed_get(url)
        cpu = cpu_seconds(gateway.proc.pid) - before
        return size / MB / seconds, cpu / (size / GB)
    finally:
        bench.drop_gateway(net, gateway)


def bench_private(bench: Bench) -> None:
    """push and cold GET: a private network vs a public one, alternating runs."""
    paths = [bench.paths["gcc"], bench.paths["python"]]
    kinds = ("private", "public")
    push_wall: dict[str, list[float]] = {k: [] for k in kinds}
    push_cpu: dict[str, list[float]] = {k: [] for k in kinds}
    get_rate: dict[str, list[float]] = {k: [] for k in kinds}
    get_cpu: dict[str, list[float]] = {k: [] for k in kinds}
    for run in range(bench.args.runs):
        for kind in kinds:
            net = bench.new_network(f"{kind}-{run}", private=kind == "private")
            sample = bench.push(net, paths)
            push_wall[kind].append(sample.seconds)
            push_cpu[kind].append(sample.cpu)
            rate, cpu = cold_get(bench, net, f"get-{kind}-{run}")
            get_rate[kind].append(rate)
            get_cpu[kind].append(cpu)
            bench.drop_network(net)
        print(f"  private run {run + 1}: push {push_wall['private'][-1]:.2f} s / "
              f"{push_cpu['private'][-1]:.2f} CPU-s (public {push_wall['public'][-1]:.2f} / "
              f"{push_cpu['public'][-1]:.2f}), cold GET {get_rate['private'][-1]:.0f} MB/s, "
              f"{get_cpu['private'][-1]:.2f} CPU-s/GB (public {get_rate['public'][-1]:.0f}, "
              f"{get_cpu['public'][-1]:.2f})", flush=True)
    bench.rows += [
        Row("push gcc+python, private cache (ref: public), wall", "s",
            push_wall["private"], push_wall["public"]),
        Row("push gcc+python, private cache (ref: public), CPU of the push", "CPU-s",
            push_cpu["private"], push_cpu["public"]),
        Row("GET gcc NAR cold, private cache (ref: public), body", "MB/s",
            get_rate["private"], get_rate["public"]),
        Row("GET gcc NAR cold, private cache (ref: public), gateway CPU", "CPU-s/GB",
            get_cpu["private"], get_cpu["public"]),
    ]

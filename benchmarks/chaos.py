"""Cold NAR GETs under concurrent readers while nodes fail: success rate and latency.

Usage (from the repository root; needs nix, as the test suite does)::

    python3 benchmarks/chaos.py [--seconds 60] [--clients 6] [--label after]
                                [--out benchmarks/results.md]

Three scenarios on a fresh network each (8 node processes, 4-of-6, behind the fault
proxy of tests/chaos/proxy.py; 4 store paths of 0.3-4 MB; a gateway with its NAR
cache off, so every GET rebuilds the NAR from shards; see tests/chaos/run.py):

- ``0 down``: no fault;
- ``m down``: m = 2 nodes SIGKILLed for the whole run;
- ``chaos``: up to m nodes at a time broken and healed again (SIGKILL, SIGSTOP, or a
  hostile proxy mode: down, stall, deep JSON, endless or trickling answers, flipped
  bytes, slow ``has``).

For each: NARs fetched whole and matching their NarHash, failures by kind (wrong bytes,
truncated 200s, statuses), success rate, p50 and p99 latency of the successful GETs, and
the gateway's peak RSS (VmHWM).
The report replaces the section after ``<!-- section by benchmarks/chaos.py -->`` in
``--out`` (``benchmarks/bench.py`` keeps that section when it rewrites the file), one
table per ``--label`` (e.g. ``before`` on an old commit, ``after``).  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.sections import commit, write_section  # noqa: E402
from tests.chaos.run import ChaosNetwork, Tally, chaos_run, run_readers  # noqa: E402


async def scenario(net: ChaosNetwork, name: str, seconds: float, clients: int) -> Tally:
    """One scenario's readers (and chaos) on a started network."""
    if name == "chaos":
        return await chaos_run(net, seconds, clients, net.m)
    if name == "m down":
        for number in range(1, net.m + 1):
            net.break_node(number, "kill")
    tally = Tally()
    await run_readers(net.gateway, net.paths, clients, seconds, tally)
    return tally


def row(name: str, tally: Tally, peak: int) -> str:
    """One markdown table row (``peak``: the gateway's VmHWM, bytes)."""
    done = tally.ok + tally.failures
    rate = 100.0 * tally.ok / done if done else 0.0
    statuses = ", ".join(f"{s}: {c}" for s, c in sorted(tally.statuses.items())) or "none"
    return (f"| {name} | {tally.ok} | {tally.wrong} | {tally.truncated} | {statuses} | "
            f"{rate:.1f}% | {tally.percentile(50):.2f} s | {tally.percentile(99):.2f} s | "
            f"{peak / 1e6:.0f} MB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--label", default="after")
    parser.add_argument("--scenarios", default="0 down,m down,chaos")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md")
    args = parser.parse_args()
    lines = [
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {args.clients} readers, "
        f"{args.seconds:g} s per scenario.",
        "",
        "| scenario | NARs ok | wrong | truncated 200s | other statuses | success | p50 | p99 "
        "| gateway peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.scenarios.split(","):
        net = ChaosNetwork(Path(tempfile.mkdtemp(prefix="nixshard-chaos-")))
        started = time.monotonic()
        try:
            net.start()
            tally = asyncio.run(scenario(net, name, args.seconds, args.clients))
            peak = net.gateway_peak_rss()
        finally:
            net.close()
        lines.append(row(name, tally, peak))
        print(lines[-1], f"({time.monotonic() - started:.0f} s; faults {dict(tally.faults)})",
              flush=True)
        for note in tally.notes[:5]:
            print("   ", note)
    write_section(args.out, "chaos.py", "Chaos: cold NAR GETs while nodes fail "
                  "(`python3 benchmarks/chaos.py`)",
                  "See the docstring of benchmarks/chaos.py for the set-up.", args.label,
                  "\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

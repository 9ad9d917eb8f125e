"""Figures for the end-to-end flow, side by side with Nix's own file:// cache.

Usage: python benchmarks/acceptance_figures.py [--tree /usr/lib/python3.11] [--runs 3]

Adds the tree to the store, starts 6 nodes (4-of-6) and a daemon, then
alternates runs of ours and the reference and prints medians and ratios:
- push: ``nixshard push`` vs ``nix copy --to file://DIR?compression=zstd``;
- pull: ``nix copy --from`` the daemon vs ``nix copy --from file://DIR``
  (both into fresh store roots);
- the daemon's peak RSS (VmHWM) after serving the NAR.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nixshard.localnet import LocalNetwork, env_with_nix_config
from storage_network.auth import parse_publisher_secret


def run(*args: str) -> float:
    """Wall seconds of a command that must succeed."""
    start = time.perf_counter()
    subprocess.run(list(args), check=True, env=env_with_nix_config(), capture_output=True)
    return time.perf_counter() - start


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default="/usr/lib/python3.11")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nixshard-bench-"))
    try:
        copy = work / "bench-tree"
        shutil.copytree(args.tree, copy, symlinks=True)
        path = subprocess.run(["nix-store", "--add", str(copy)], check=True, text=True,
                              capture_output=True, env=env_with_nix_config()).stdout.strip()
        run("nix-store", "--generate-binary-cache-key", "bench-1", str(work / "sk"),
            str(work / "pk"))
        pk = (work / "pk").read_text().strip()
        publisher = parse_publisher_secret((work / "sk").read_text())
        push_ours, push_ref, pull_ours, pull_ref = [], [], [], []
        with LocalNetwork(work / "net", publisher) as local:
            (work / "net").mkdir(exist_ok=True)
            for i in range(args.runs):
                for node in local.nodes:
                    node.stop()
                local.nodes.clear()
                if local.daemon:
                    local.daemon.stop()
                shutil.rmtree(work / "net", ignore_errors=True)
                (work / "net").mkdir()
                local.start_nodes(6, 4, 2)
                url = local.start_daemon()
                push_ours.append(run(sys.executable, "-m", "nixshard", "push", "--network",
                                     str(local.network_file), "--signing-key", str(work / "sk"),
                                     path))
                cache = work / f"filecache-{i}"
                push_ref.append(run("nix", "copy", "--to",
                                    f"file://{cache}?compression=zstd&secret-key={work / 'sk'}",
                                    path))
                pull_ours.append(run("nix", "copy", "--from", url, "--to",
                                     str(work / f"root-ours-{i}"), "--option",
                                     "trusted-public-keys", pk, path))
                pull_ref.append(run("nix", "copy", "--from", f"file://{cache}", "--to",
                                    str(work / f"root-ref-{i}"), "--option",
                                    "trusted-public-keys", pk, path))
            assert local.daemon is not None and local.daemon.proc is not None
            rss = peak_rss_mib(local.daemon.proc.pid)
        nar_size = subprocess.run(["nix", "path-info", "--json", path], check=True, text=True,
                                  capture_output=True, env=env_with_nix_config()).stdout
        print(f"tree: {args.tree} -> {path}")
        print(f"path-info: {nar_size.strip()[:200]}")
        print(f"{'what':<34}{'ours s':>10}{'ref s':>10}{'ratio':>8}")
        for what, ours, ref in (
                ("push vs nix copy --to file://", push_ours, push_ref),
                ("pull (nix copy --from) vs file://", pull_ours, pull_ref)):
            o, r = statistics.median(ours), statistics.median(ref)
            print(f"{what:<34}{o:>10.2f}{r:>10.2f}{o / r:>8.2f}")
        print(f"daemon peak RSS after serving: {rss:.1f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Gateway figures: cold and hot NAR GET, and bytes a hot GET passes through user space.

    python3 benchmarks/gateway_figures.py [--tree /usr/lib/python3.11] [--runs 3]

Starts 6 nodes (4-of-6) and a gateway with its local disk cache, pushes the
tree as one store path (nixshard's own NAR writer; no nix needed), then:

- cold GET (empty cache: fetched from the network once, written to disk,
  followed by the client) and hot GET (sendfile from the cache), medians of
  ``--runs``, MB/s of the .nar.zst body;
- one hot GET under ``strace -f`` on the gateway: the bytes each syscall
  moved to the client socket.  ``sendfile`` bytes go disk -> socket inside
  the kernel; ``write``/``writev``/``sendto``/``sendmsg`` bytes were copied
  from Python's memory, which for a hot NAR should be the headers only.

Prints a small table; nothing is asserted (figures go into the closing note).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from bench_measure import timed_get  # benchmarks/ is the script's directory

from nix_formats.keys import SecretKey
from nix_formats.narinfo import NarInfo
from nixshard.demo import tree_path_info
from nixshard.localnet import LocalNetwork, new_publisher
from uploader.cli import run_push

SYSCALL_RE = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\((\d+),.*\)\s+=\s+(-?\d+)")


def traced_get(pid: int, url: str, out: Path) -> dict[str, int]:
    """Bytes moved per syscall name by the gateway while it serves one GET of ``url``."""
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-p", str(pid), "-o", str(out), "-e",
                               "trace=sendfile,write,writev,sendto,sendmsg"],
                              stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let strace attach to every thread
    timed_get(url)
    time.sleep(0.5)
    tracer.terminate()
    tracer.wait()
    moved: dict[str, int] = {}
    for line in out.read_text().splitlines():
        m = SYSCALL_RE.match(line)
        if m and int(m.group(3)) > 0:
            moved[m.group(1)] = moved.get(m.group(1), 0) + int(m.group(3))
    return moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", default="/usr/lib/python3.11")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nixshard-gw-bench-"))
    publisher, secret = new_publisher("bench-1")
    try:
        with LocalNetwork(root, publisher) as net:
            network = net.start_nodes(6, 4, 2)
            tree = root / "tree"
            shutil.copytree(args.tree, tree, symlinks=True)
            info = tree_path_info(tree)
            asyncio.run(run_push(network, [info], SecretKey.parse(secret), publisher))
            cold, hot = [], []
            size = 0
            for run in range(args.runs):
                gw = net.start_gateway(f"gw{run}")
                narinfo = NarInfo.parse(httpx.get(
                    f"{gw.url}/{info.store_path.hash_part}.narinfo", timeout=30).text)
                url = f"{gw.url}/{narinfo.url}"
                seconds, size = timed_get(url)
                cold.append(seconds)
                hot.append(timed_get(url)[0])
            assert gw.proc is not None
            moved = traced_get(gw.proc.pid, url, root / "strace.txt")
            mb = size / 1e6
            print(f"NAR .nar.zst body: {mb:.1f} MB ({args.tree}), medians of {args.runs}")
            print(f"cold GET: {statistics.median(cold):.3f} s = "
                  f"{mb / statistics.median(cold):.0f} MB/s")
            print(f"hot GET:  {statistics.median(hot):.3f} s = "
                  f"{mb / statistics.median(hot):.0f} MB/s")
            print("hot GET, bytes by syscall in the gateway (strace):")
            for name, count in sorted(moved.items()):
                print(f"  {name:9s} {count:>12,d}")
            user = sum(v for k, v in moved.items() if k != "sendfile")
            print(f"bytes copied from user space: {user:,d} "
                  f"(sendfile, kernel only: {moved.get('sendfile', 0):,d})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

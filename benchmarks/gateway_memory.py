"""The gateway's peak memory with hostile nodes and decompression bombs, next to an idle one.

Usage (from the repository root; needs nix, as the test suite does)::

    python3 benchmarks/gateway_memory.py [--seconds 20] [--clients 6] [--label after]
                                         [--out benchmarks/results.md]

One network (8 node processes, 4-of-6, behind the fault proxy of tests/chaos/proxy.py,
4 store paths of 0.3-4 MB pushed; see tests/chaos/run.py).  Each case starts a fresh
gateway (``nixshard serve``, NAR cache off, uploads on) so its peak resident set
(``VmHWM``) is the case's own:

- ``idle`` (the reference): 20 narinfo hits and 1 s of one reader of cold NARs;
- ``narinfo misses, m endless``: m nodes answer every record GET, ``has`` and
  batch-get with an endless body; ``clients`` clients ask narinfos nobody pushed for
  ``seconds`` (each miss asks the record's window, so most meet an endless node);
- ``cold NARs, m endless``: the same nodes, ``clients`` readers fetching whole NARs;
- ``cold NARs, m trickling``: m nodes forward their answers at 1 byte/s;
- ``zstd bombs`` / ``brotli bombs``: 4 concurrent uploads of a 32 KB zstd file of a
  1 GiB NAR and of a 1.6 kB brotli file of 1 GiB, each claiming NarSize 120.

Reported per case: requests made, their answers by status, the gateway's peak RSS and
its ratio to the idle gateway's.  The report goes under ``--label`` in this script's
section of ``--out`` (see benchmarks/sections.py).  Nothing is asserted; the suite's
limits are in tests/cache_server/test_gateway_limits.py and tests/e2e/test_chaos.py.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.sections import commit, write_section  # noqa: E402
from nix_formats import nix32  # noqa: E402
from nix_formats.keys import SecretKey  # noqa: E402
from tests.cache_server.gateway_support import (  # noqa: E402
    BROTLI_BOMB_FILE,
    PASSWORD,
    USER,
    bomb_upload,
    put_upload,
    zstd_nar_bomb,
)
from tests.chaos.run import ChaosNetwork, Tally, run_readers  # noqa: E402

BOMBS_AT_ONCE = 4


async def narinfo_misses(base: str, clients: int, seconds: float) -> Counter[int]:
    """``clients`` clients asking random absent narinfos for ``seconds``; statuses."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    rng = random.Random(3)

    async def client() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as http:
            while time.monotonic() < deadline:
                hash_part = nix32.encode(rng.randbytes(20))
                statuses[(await http.get(f"{base}/{hash_part}.narinfo")).status_code] += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return statuses


def readers(base: str, paths: list[str], clients: int, seconds: float) -> Counter[int]:
    """Cold NAR readers (tests/chaos/run.py); their outcomes as statuses (0: truncated
    or wrong bytes)."""
    tally = Tally()
    asyncio.run(run_readers(base, paths, clients, seconds, tally))
    outcomes = Counter({200: tally.ok, **tally.statuses})
    if tally.wrong + tally.truncated:
        outcomes[0] = tally.wrong + tally.truncated
    return outcomes


def bombs(base: str, key: SecretKey, body: bytes, compression: str, ext: str
          ) -> Counter[int]:
    """:data:`BOMBS_AT_ONCE` concurrent uploads of ``body`` claiming NarSize 120; the
    narinfo PUTs' statuses."""
    def upload(number: int) -> int:
        up = bomb_upload(key, body, compression, ext, nar_size=120, tag=f"-{number}")
        with httpx.Client(base_url=base, timeout=300, auth=(USER, PASSWORD)) as http:
            return int(put_upload(http, up)[1].status_code)

    with concurrent.futures.ThreadPoolExecutor(BOMBS_AT_ONCE) as pool:
        return Counter(pool.map(upload, range(BOMBS_AT_ONCE)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--label", default="after")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md")
    args = parser.parse_args()
    net = ChaosNetwork(Path(tempfile.mkdtemp(prefix="nixshard-memory-")))
    credentials = net.root / "credentials"
    credentials.write_text(f"{USER}:{PASSWORD}\n")
    lines = [
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {args.clients} clients, "
        f"{args.seconds:g} s per load case.",
        "",
        "| case | answers | gateway peak RSS | vs idle |",
        "|---|---|---|---|",
    ]
    try:
        net.start()
        key = SecretKey.parse(net.key_file.read_text())
        zstd_bomb = zstd_nar_bomb(1 << 30)
        bad = range(1, net.m + 1)
        idle = 0

        def case(name: str, mode: str, work: Callable[[str], Counter[int]]) -> None:
            nonlocal idle
            for number in bad:
                net.set_mode(number, mode)
            gateway = net.local.start_gateway(
                f"gw-{len(lines)}", extra=["--cache-max-bytes", "0", "--signing-key",
                                           str(net.key_file), "--upload-credentials",
                                           str(credentials)])
            try:
                started = time.monotonic()
                answers = work(gateway.url)
                peak = gateway.peak_rss()
            finally:
                gateway.stop()
                for number in bad:
                    net.set_mode(number, "pass")
            idle = idle or peak
            shown = ", ".join(f"{status or 'cut/wrong'}: {count}"
                              for status, count in sorted(answers.items()))
            lines.append(f"| {name} | {shown} | {peak / 1e6:.0f} MB | {peak / idle:.2f} |")
            print(lines[-1], f"({time.monotonic() - started:.0f} s)", flush=True)

        def idle_work(url: str) -> Counter[int]:
            answers: Counter[int] = Counter()
            for path in net.paths * 5:
                hash_part = Path(path).name.split("-", 1)[0]
                answers[httpx.get(f"{url}/{hash_part}.narinfo", timeout=60).status_code] += 1
            return answers + readers(url, net.paths, 1, 1.0)

        m = net.m
        case("idle (reference)", "pass", idle_work)
        case(f"narinfo misses, {m} endless", "endless",
             lambda url: asyncio.run(narinfo_misses(url, args.clients, args.seconds)))
        case(f"cold NARs, {m} endless", "endless",
             lambda url: readers(url, net.paths, args.clients, args.seconds))
        case(f"cold NARs, {m} trickling", "trickle",
             lambda url: readers(url, net.paths, args.clients, args.seconds))
        case(f"zstd bombs ({BOMBS_AT_ONCE} at once)", "pass",
             lambda url: bombs(url, key, zstd_bomb, "zstd", ".zst"))
        case(f"brotli bombs ({BOMBS_AT_ONCE} at once)", "pass",
             lambda url: bombs(url, key, BROTLI_BOMB_FILE.read_bytes(), "br", ".br"))
    finally:
        net.close()
    write_section(args.out, "gateway_memory.py",
                  "Gateway memory: hostile nodes and decompression bombs "
                  "(`python3 benchmarks/gateway_memory.py`)",
                  "See the docstring of benchmarks/gateway_memory.py for the set-up; "
                  "answers are HTTP statuses (narinfo PUTs for the bombs).", args.label,
                  "\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

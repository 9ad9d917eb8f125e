"""Narinfo hits and 404s: one gateway worker against a bare aiohttp handler, same run.

    python3 benchmarks/narinfo_rate.py [--runs 3] [--seconds 5] [--keep]

Run it from the repository root: the nodes and the gateway are ``python -m nixshard``
in the current directory.

The set-up: a key from ``nix-store --generate-binary-cache-key``; a small tree
(one file of a few random bytes) added with ``nix-store --add`` as
``nixshard-narinfo-rate`` (deleted at the end unless ``--keep``); a local network
of 6 nodes, 4-of-6 (``LocalNetwork.start_nodes(6, 4, 2)``) and ``nixshard push`` of
that path.  Then:

- the gateway: one ``nixshard serve`` with default options (access log on) and
  ``--workers 1`` (when ``serve`` has that option), its hit warmed by one GET;
- the reference: this script again, ``--serve-bare``, in a process of its own:
  a minimal aiohttp app (no middleware, no access log) with one route
  ``/{hash}.narinfo`` whose handler answers the pushed path's hash with the
  gateway's narinfo text (``text/x-nix-narinfo``) and any other hash with a 404
  whose ``text/plain`` body is the gateway's 404 body (same size).

Each round runs ``wrk -t1 -c32 -dS`` (:func:`benchmarks.bench_measure.run_wrk`) on
gateway hit, bare hit, gateway 404, bare 404, in that order, and reads the
serving process's user + system CPU-seconds (``/proc/PID/stat``,
:func:`benchmarks.bench_measure.cpu_seconds`) before and after each: µs of CPU per
request.  Prints a markdown table: medians over ``--runs`` rounds, and the ratio
gateway / bare as the median of each round's ratio (only same-run ratios mean
anything on a shared machine).  Nothing is asserted; not part of pytest.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_data import add_to_store  # noqa: E402
from benchmarks.bench_env import nix_env  # noqa: E402
from benchmarks.bench_measure import BenchError, cpu_seconds, run_wrk  # noqa: E402
from benchmarks.bench_run import remove_tree  # noqa: E402
from nixshard.localnet import LocalNetwork, ManagedProcess, free_port  # noqa: E402
from storage_network.wire.write_auth import parse_publisher_secret  # noqa: E402

N, K, M = 6, 4, 2
ABSENT_HASH = "a" * 32  # 32 nix32 characters, a path nobody pushed
TREE_NAME = "nixshard-narinfo-rate"
TARGETS = ("gateway hit", "bare hit", "gateway 404", "bare 404")


@dataclass(frozen=True)
class Answer:
    """One answer of the gateway, as the bare server repeats it: status, body, type."""

    status: int
    body: bytes
    content_type: str


@dataclass
class Sample:
    """One wrk run on one target: requests/s and µs of the server's CPU per request."""

    rps: float
    cpu_us: float


def serve_bare(port: int, hash_part: str, hit: Path, miss: Path) -> None:
    """Serve the reference app on ``127.0.0.1:port`` until killed: ``GET
    /{hash}.narinfo`` answers ``hit``'s bytes (``text/x-nix-narinfo``) for
    ``hash_part`` and ``miss``'s bytes (404, ``text/plain``) for any other hash."""
    from aiohttp import web

    hit_text, miss_text = hit.read_text(), miss.read_text()

    async def narinfo(request: web.Request) -> web.Response:
        if request.match_info["hash"] == hash_part:
            return web.Response(text=hit_text, content_type="text/x-nix-narinfo")
        return web.Response(status=404, text=miss_text)

    app = web.Application()
    app.router.add_get("/{hash}.narinfo", narinfo)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def fetch(url: str) -> Answer:
    """Status, body and Content-Type of one GET of ``url``."""
    import httpx

    resp = httpx.get(url, timeout=30)
    return Answer(resp.status_code, resp.content, resp.headers.get("content-type", ""))


def workers_option() -> tuple[str, ...]:
    """``("--workers", "1")`` when ``nixshard serve`` has that option, else ``()``."""
    help_text = subprocess.run([sys.executable, "-m", "nixshard", "serve", "--help"],
                               capture_output=True, text=True, check=False).stdout
    return ("--workers", "1") if "--workers" in help_text else ()


def measure(url: str, pid: int, seconds: int) -> Sample:
    """One ``wrk -t1 -c32`` run on ``url``: requests/s and µs of ``pid``'s CPU per
    request.

    Raises:
        BenchError: wrk reported socket errors.
    """
    before = cpu_seconds(pid)
    result = run_wrk(url, seconds, None)
    cpu = cpu_seconds(pid) - before
    if result.errors != "none":
        raise BenchError(f"wrk on {url}: socket errors {result.errors}")
    return Sample(result.rps, cpu / max(result.requests, 1) * 1e6)


def round_ratios(samples: dict[str, list[Sample]], kind: str, field: str) -> list[float]:
    """Per round, gateway / bare of ``field`` (``rps`` or ``cpu_us``) for ``kind``
    (``hit`` or ``404``)."""
    return [getattr(g, field) / getattr(b, field)
            for g, b in zip(samples[f"gateway {kind}"], samples[f"bare {kind}"], strict=True)]


def table(samples: dict[str, list[Sample]]) -> str:
    """The markdown table: per answer kind, gateway and bare medians and the ratios."""
    lines = ["| answer | gateway req/s | bare req/s | ratio req/s | gateway µs CPU/req "
             "| bare µs CPU/req | ratio CPU/req | req/s samples (gateway / bare) |",
             "|---|---|---|---|---|---|---|---|"]
    for kind in ("hit", "404"):
        gw, bare = samples[f"gateway {kind}"], samples[f"bare {kind}"]
        rate = round_ratios(samples, kind, "rps")
        cpu = round_ratios(samples, kind, "cpu_us")
        pairs = ", ".join(f"{g.rps:.0f}/{b.rps:.0f}" for g, b in zip(gw, bare, strict=True))
        lines.append(
            f"| {kind} | {statistics.median(s.rps for s in gw):.0f} | "
            f"{statistics.median(s.rps for s in bare):.0f} | {statistics.median(rate):.2f} | "
            f"{statistics.median(s.cpu_us for s in gw):.1f} | "
            f"{statistics.median(s.cpu_us for s in bare):.1f} | "
            f"{statistics.median(cpu):.2f} | {pairs} |")
    return "\n".join(lines)


def start_bare(root: Path, hash_part: str, hit: Answer, miss: Answer) -> ManagedProcess:
    """The reference server (:func:`serve_bare`) in a process of its own, ready."""
    hit_file, miss_file = root / "bare-hit.txt", root / "bare-miss.txt"
    hit_file.write_bytes(hit.body)
    miss_file.write_bytes(miss.body)
    port = free_port()
    bare = ManagedProcess("bare", ["--serve-bare", str(port), hash_part, str(hit_file),
                                   str(miss_file)],
                          f"http://127.0.0.1:{port}", root / "bare.log",
                          health_path=f"/{hash_part}.narinfo",
                          program=(sys.executable, str(Path(__file__).resolve())))
    return bare.start().wait_ready()


def check_same(gateway: Answer, bare: Answer, what: str) -> None:
    """Raise :class:`BenchError` unless both answers have the same status, body size and
    Content-Type."""
    if (gateway.status, len(gateway.body), gateway.content_type) != (
            bare.status, len(bare.body), bare.content_type):
        raise BenchError(f"{what}: gateway {gateway.status} {len(gateway.body)} B "
                         f"{gateway.content_type!r}, bare {bare.status} {len(bare.body)} B "
                         f"{bare.content_type!r}")


def run(args: argparse.Namespace, work: Path, env: dict[str, str],
        store_paths: list[str]) -> None:
    """Set up the network, the gateway and the reference; measure; print the table."""
    sk, pk = work / "secret.key", work / "public.key"
    subprocess.run(["nix-store", "--generate-binary-cache-key", "nixshard-rate-1", str(sk),
                    str(pk)], check=True, env=env)
    tree = work / TREE_NAME
    tree.mkdir()
    (tree / "file").write_text(f"narinfo rate {secrets.token_hex(8)}\n")  # a fresh path
    store_path = add_to_store(tree, env)
    store_paths.append(store_path)
    hash_part = Path(store_path).name[:32]

    net = LocalNetwork(work / "net", parse_publisher_secret(sk.read_text()))
    net.root.mkdir()
    try:
        net.start_nodes(N, K, M)
        push = net.run_nixshard("push", "--network", str(net.network_file), "--signing-key",
                                str(sk), "--no-progress", store_path, env=env)
        if push.returncode != 0:
            raise BenchError(f"nixshard push failed:\n{push.stdout[-1500:]}"
                             f"{push.stderr[-1500:]}")
        workers = workers_option()
        gateway = net.start_gateway("gw", extra=workers)
        assert gateway.proc is not None
        urls = {"gateway hit": f"{gateway.url}/{hash_part}.narinfo",
                "gateway 404": f"{gateway.url}/{ABSENT_HASH}.narinfo"}
        hit, miss = fetch(urls["gateway hit"]), fetch(urls["gateway 404"])  # warms the hit
        if hit.status != 200 or miss.status != 404:
            raise BenchError(f"gateway answered {hit.status} to the hit, {miss.status} to "
                             "the 404")
        bare = start_bare(work, hash_part, hit, miss)
        assert bare.proc is not None
        try:
            urls["bare hit"] = f"{bare.url}/{hash_part}.narinfo"
            urls["bare 404"] = f"{bare.url}/{ABSENT_HASH}.narinfo"
            check_same(hit, fetch(urls["bare hit"]), "hit")
            check_same(miss, fetch(urls["bare 404"]), "404")
            pids = {"gateway": gateway.proc.pid, "bare": bare.proc.pid}
            samples: dict[str, list[Sample]] = {t: [] for t in TARGETS}
            for number in range(args.runs):
                for target in TARGETS:
                    samples[target].append(measure(urls[target], pids[target.split()[0]],
                                                   args.seconds))
                print(f"  round {number + 1}: " + ", ".join(
                    f"{t} {samples[t][-1].rps:.0f}/s {samples[t][-1].cpu_us:.1f} µs"
                    for t in TARGETS), flush=True)
        finally:
            bare.stop()
        print()
        print(f"narinfo {len(hit.body)} B, 404 body {len(miss.body)} B; wrk -t1 -c32 "
              f"-d{args.seconds}s, {args.runs} rounds; gateway {' '.join(workers)} "
              f"(access log on); load {os.getloadavg()[0]:.2f}")
        print()
        print(table(samples))
        print("\nratios: the median of each round's gateway / bare (same-run pairs)")
    finally:
        net.close()


def main() -> None:
    """Parse the arguments; serve the reference (``--serve-bare``) or run the benchmark."""
    if sys.argv[1:2] == ["--serve-bare"]:
        port, hash_part, hit, miss = sys.argv[2:6]
        serve_bare(int(port), hash_part, Path(hit), Path(miss))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds of the four wrk runs")
    parser.add_argument("--seconds", type=int, default=5, help="seconds of each wrk run")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir (logs, node data) and the store path")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nixshard-narinfo-rate-"))
    print(f"temp dir {work}", flush=True)
    (work / "xdg").mkdir()
    env = nix_env(work / "xdg")
    store_paths: list[str] = []
    try:
        run(args, work, env, store_paths)
    finally:
        if args.keep:
            print(f"kept {work} and {' '.join(store_paths)}")
        else:
            remove_tree(work)
            for path in store_paths:
                subprocess.run(["nix-store", "--delete", path], capture_output=True, env=env,
                               check=False)


if __name__ == "__main__":
    main()

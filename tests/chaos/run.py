"""A chaos run: concurrent Nix-style readers against a gateway while nodes fail and lie.

Used by ``tests/e2e/test_chaos.py`` (a bounded run in CI) and
``benchmarks/chaos.py`` (the figures in ``benchmarks/results.md``).

Set-up (:class:`ChaosNetwork`): real node processes behind one fault proxy
(:mod:`tests.chaos.proxy`; the network file names the proxy's ports), real
store paths added with ``nix-store --add`` and pushed with ``nixshard push``,
and a gateway (``nixshard serve``) with its local NAR cache off, so every
NAR is rebuilt from shards.

A run (:func:`run_readers`) has ``clients`` concurrent readers, each fetching
a random path's narinfo and then its ``.nar.zst`` until the run ends, and
checking every body: the whole Content-Length must arrive and decompress to
a NAR whose SHA-256 is the narinfo's NarHash.  Meanwhile :func:`chaos` makes
up to ``bad`` nodes misbehave at a time (SIGKILL, SIGSTOP, or a proxy mode:
down, stall, deep JSON, endless or trickling answers, flipped bytes, slow
``has``), heals them and picks others; a node being restarted counts as bad,
so at no moment are more than ``bad`` nodes bad in any way.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import zstandard

from nix_formats.hash import parse_nix_hash
from nixshard.localnet import (
    LocalNetwork,
    ManagedProcess,
    env_with_nix_config,
    free_port,
    new_publisher,
)
from storage_network.config import ChunkingParams, init_network, write_network
from storage_network.wire.write_auth import parse_publisher_secret
from tests.chaos.proxy import proxy_process, set_mode

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULTS = ("kill", "stop", "down", "stall", "deep-json", "endless", "trickle", "flip",
          "slow-has")
PATH_SIZES = (4_000_000, 2_000_000, 1_000_000, 300_000)


@dataclass
class Tally:
    """What the readers saw.

    Attributes:
        ok: NARs whose whole body arrived and matched the NarHash.
        wrong: bodies that arrived whole but did not match (must stay 0).
        truncated: 200s whose body ended before its Content-Length (must stay 0).
        statuses: non-200 answers by status (narinfo or NAR).
        latencies: seconds of each ok NAR GET (headers to last byte).
        faults: chaos events applied, by kind.
    """

    ok: int = 0
    wrong: int = 0
    truncated: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        """Every reader outcome that is not a correct NAR."""
        return self.wrong + self.truncated + sum(self.statuses.values())

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0-100) of ok latencies, seconds (0 when none)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def nar_sha256(body: bytes) -> bytes:
    """SHA-256 of the NAR inside a ``.nar.zst`` of back-to-back zstd frames."""
    digest = hashlib.sha256()
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
    while piece := reader.read(1 << 20):
        digest.update(piece)
    return digest.digest()


def narinfo_fields(text: str) -> dict[str, str]:
    """``Key: value`` lines of a narinfo."""
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


class ChaosNetwork:
    """Nodes behind a fault proxy, a pushed set of store paths, a cache-less gateway.

    Args:
        root: a fresh directory for everything.
        nodes, k, m: the network's shape.
    """

    def __init__(self, root: Path, nodes: int = 8, k: int = 4, m: int = 2) -> None:
        self.root = root
        self.k, self.m = k, m
        root.mkdir(parents=True, exist_ok=True)
        _, secret = new_publisher("chaos-1")
        self.key_file = root / "secret.key"
        self.key_file.write_text(secret)
        self.local = LocalNetwork(root, parse_publisher_secret(secret))
        self.count = nodes
        self.proxy: ManagedProcess | None = None
        self.control = free_port()
        self.proxy_ports = [free_port() for _ in range(nodes)]
        self.paths: list[str] = []
        self.gateway = ""
        self.stopped: set[int] = set()

    def start(self, gateway_args: Sequence[str] = ()) -> None:
        """Start nodes, proxy, push the paths, start the gateway."""
        self.local.start_nodes(self.count, self.k, self.m)
        routes = {p: n.url for p, n in zip(self.proxy_ports, self.local.nodes, strict=True)}
        self.proxy = proxy_process(self.root / "proxy.log", self.control, routes)
        self.proxy.start().wait_ready()
        network = init_network([f"http://127.0.0.1:{p}" for p in self.proxy_ports], self.k,
                               self.m, [self.local.publisher.public],
                               chunking=ChunkingParams(16 * 1024, 64 * 1024, 256 * 1024))
        write_network(network, self.local.network_file)
        self.paths = self._add_paths()
        done = subprocess.run(
            [sys.executable, "-m", "nixshard", "push", "--network", str(self.local.network_file),
             "--signing-key", str(self.key_file), "--no-progress", *self.paths],
            cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"push failed: {done.stderr[-2000:]}")
        self.gateway = self.local.start_daemon(extra=["--cache-max-bytes", "0", *gateway_args])

    def _add_paths(self) -> list[str]:
        rng = random.Random(7)
        paths = []
        for number, size in enumerate(PATH_SIZES):
            tree = self.root / f"tree-{number}" / f"chaos-{os.getpid()}-{number}"
            tree.mkdir(parents=True)
            (tree / "random.bin").write_bytes(rng.randbytes(size // 2))
            words = b" ".join(rng.choice((b"nix", b"shard", b"chunk", b"stripe", b"node"))
                              for _ in range(size // 10))
            (tree / "text.txt").write_bytes(words[:size // 2])
            done = subprocess.run(["nix-store", "--add", str(tree)], capture_output=True,
                                  text=True, env=env_with_nix_config(), check=True)
            paths.append(done.stdout.strip())
        return paths

    def set_mode(self, number: int, mode: str) -> None:
        """Switch proxied node ``number`` (1-based) to a proxy mode."""
        assert self.proxy is not None
        set_mode(self.proxy, self.proxy_ports[number - 1], mode)

    def break_node(self, number: int, fault: str) -> None:
        """Make node ``number`` bad with ``fault`` (one of :data:`FAULTS`)."""
        proc = self.local.nodes[number - 1].proc
        if fault == "kill":
            self.local.nodes[number - 1].kill()
        elif fault == "stop":
            assert proc is not None
            proc.send_signal(signal.SIGSTOP)
            self.stopped.add(number)
        else:
            self.set_mode(number, fault)

    def heal_node(self, number: int, fault: str) -> None:
        """Undo :meth:`break_node` (a killed node is restarted and waited for)."""
        if fault == "kill":
            self.local.restart_node(number)
        elif fault == "stop":
            proc = self.local.nodes[number - 1].proc
            assert proc is not None
            proc.send_signal(signal.SIGCONT)
            self.stopped.discard(number)
        else:
            self.set_mode(number, "pass")

    def gateway_peak_rss(self) -> int:
        """The gateway process's peak resident memory so far (VmHWM), bytes."""
        assert self.local.daemon is not None
        return self.local.daemon.peak_rss()

    def close(self) -> None:
        """Stop everything (stopped nodes are continued first)."""
        for number in list(self.stopped):
            self.heal_node(number, "stop")
        if self.proxy is not None:
            self.proxy.stop()
        self.local.close()


async def _read_nar(client: httpx.AsyncClient, base: str, path: str, tally: Tally) -> None:
    hash_part = Path(path).name.split("-", 1)[0]
    resp = await client.get(f"{base}/{hash_part}.narinfo")
    if resp.status_code != 200:
        tally.statuses[resp.status_code] += 1
        tally.notes.append(f"narinfo {hash_part}: {resp.status_code} {resp.text[:200]}")
        return
    info = narinfo_fields(resp.text)
    started = time.monotonic()
    body = bytearray()
    async with client.stream("GET", f"{base}/{info['URL']}") as nar:
        if nar.status_code != 200:
            tally.statuses[nar.status_code] += 1
            tally.notes.append(f"nar {hash_part}: {nar.status_code} "
                               f"{(await nar.aread())[:200]!r}")
            return
        want = int(nar.headers["Content-Length"])
        try:
            async for piece in nar.aiter_raw():
                body += piece
        except httpx.HTTPError as exc:
            tally.truncated += 1
            tally.notes.append(f"nar {hash_part}: cut at {len(body)} of {want}: {exc!r}")
            return
    if len(body) != want:
        tally.truncated += 1
        tally.notes.append(f"nar {hash_part}: {len(body)} of {want} bytes")
        return
    digest = await asyncio.to_thread(nar_sha256, bytes(body))
    if digest != parse_nix_hash(info["NarHash"])[1]:
        tally.wrong += 1
        tally.notes.append(f"nar {hash_part}: wrong NarHash")
        return
    tally.ok += 1
    tally.latencies.append(time.monotonic() - started)


async def run_readers(base: str, paths: Sequence[str], clients: int, seconds: float,
                      tally: Tally) -> None:
    """``clients`` readers fetching random paths for ``seconds`` seconds (each finishes
    the NAR it is reading)."""
    deadline = time.monotonic() + seconds
    rng = random.Random(11)

    async def reader() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as client:
            while time.monotonic() < deadline:
                try:
                    await _read_nar(client, base, rng.choice(list(paths)), tally)
                except httpx.HTTPError as exc:
                    tally.truncated += 1
                    tally.notes.append(f"request failed: {exc!r}")

    await asyncio.gather(*(reader() for _ in range(clients)))


async def chaos(net: ChaosNetwork, seconds: float, bad: int, tally: Tally,
                faults: Sequence[str] = FAULTS, hold: tuple[float, float] = (2.0, 4.0),
                seed: int = 5) -> None:
    """For ``seconds`` seconds: break up to ``bad`` random nodes with random faults,
    hold them bad ``hold`` seconds, heal them (waiting for restarts), repeat."""
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        victims = rng.sample(range(1, net.count + 1), rng.randint(1, bad))
        broken = [(number, rng.choice(list(faults))) for number in victims]
        for number, fault in broken:
            await asyncio.to_thread(net.break_node, number, fault)
            tally.faults[fault] += 1
        await asyncio.sleep(min(rng.uniform(*hold), max(0.0, deadline - time.monotonic())))
        for number, fault in broken:
            await asyncio.to_thread(net.heal_node, number, fault)


async def chaos_run(net: ChaosNetwork, seconds: float, clients: int, bad: int,
                    faults: Sequence[str] = FAULTS) -> Tally:
    """Readers and chaos together for ``seconds``; returns what the readers saw."""
    tally = Tally()
    await asyncio.gather(run_readers(net.gateway, net.paths, clients, seconds, tally),
                         chaos(net, seconds, bad, tally, faults))
    return tally

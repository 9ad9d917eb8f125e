"""A live network with one pushed tree, for the daemon's HTTP tests."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nix_formats.keys import SecretKey
from nixshard.demo import tree_path_info
from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.config import ChunkingParams
from storage_network.nodes.scores import Scores
from tests.conftest import IN_CI
from uploader.cli import run_push
from uploader.closure import PathInfo


@dataclass
class Served:
    """A running network + daemon and the path pushed into it."""

    net: LocalNetwork
    url: str
    info: PathInfo
    secret_text: str


def make_tree(root: Path) -> Path:
    """A tree of ~600 KB with a few files, an executable and a symlink."""
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    for i in range(6):
        (tree / "sub" / f"f{i}").write_bytes(bytes(range(256)) * 400 * (i + 1))
    (tree / "run").write_text("#!/bin/sh\necho hi\n")
    (tree / "run").chmod(0o755)
    (tree / "link").symlink_to("sub/f0")
    return tree


def serve_pushed(root: Path) -> Served:
    """Start 6 nodes (4-of-6, small chunks) and a daemon; push one tree."""
    publisher, secret_text = new_publisher("http-tests-1")
    net = LocalNetwork(root, publisher)
    network = net.start_nodes(6, 4, 2, ChunkingParams(4096, 16384, 65536))
    url = net.start_daemon()
    info = tree_path_info(make_tree(root))
    asyncio.run(run_push(network, [info], SecretKey.parse(secret_text), publisher))
    return Served(net, url, info, secret_text)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Shared, read-only use: tests must not kill nodes or change data here."""
    s = serve_pushed(tmp_path_factory.mktemp("served"))
    yield s
    s.net.close()


@pytest.fixture
def own_served(tmp_path: Path) -> Iterator[Served]:
    """A private network for tests that break things."""
    s = serve_pushed(tmp_path)
    yield s
    s.net.close()


FAULT_ENV = {"NIXSHARD_TEST_FAULTS": "1"}
STALL_SECONDS = 10


@dataclass
class StalledServed:
    """A daemon over 6 nodes (4-of-6) one of which stalls every request for 10 s.

    Attributes:
        served: the network, daemon and pushed path.
        stalled: id of the stalling node (the one holding most data shards).
        low_score: id of a node given audit score 0.5 in the daemon's ``--scores`` file.
    """

    served: Served
    stalled: str
    low_score: str


def _data_shards(root: Path, node_id: str, k: int) -> int:
    return sum(int(p.name.rsplit(".", 1)[1]) < k
               for p in (root / node_id / "shards").rglob("*.*") if p.is_file())


def serve_with_stalled_node(root: Path) -> StalledServed:
    """Push a tree to 6 healthy nodes, make one stall (stall=10), then start the daemon
    with ``--hedge-after 0.2`` and a scores file."""
    publisher, secret_text = new_publisher("http-tests-1")
    net = LocalNetwork(root, publisher)
    try:
        network = net.start_nodes(6, 4, 2, ChunkingParams(4096, 16384, 65536))
        info = tree_path_info(make_tree(root))
        asyncio.run(run_push(network, [info], SecretKey.parse(secret_text), publisher))
        ids = [node.id for node in network.nodes]
        stalled = max(ids, key=lambda nid: _data_shards(root, nid, network.k))
        number = ids.index(stalled) + 1
        net.nodes[number - 1].kill()
        net.restart_node(number, extra=("--fault", f"stall={STALL_SECONDS}"), env=FAULT_ENV)
        low_score = next(nid for nid in ids if nid != stalled)
        scores = Scores()
        scores.update(low_score, 0.0, {"held": 0})
        scores.save(root / "scores.json")
        url = net.start_daemon(extra=("--hedge-after", "0.2",
                                      "--scores", str(root / "scores.json")))
    except BaseException:
        net.close()
        raise
    return StalledServed(Served(net, url, info, secret_text), stalled, low_score)


@pytest.fixture(scope="module")
def stalled_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StalledServed]:
    """Shared, read-only use: a daemon whose network has one stalling node."""
    s = serve_with_stalled_node(tmp_path_factory.mktemp("stalled"))
    try:
        yield s
    finally:
        for node in s.served.net.nodes:
            node.kill()  # a stalling node would hold up a clean stop
        s.served.net.close()


MountTmpfs = Callable[[Path, int], Path]


@pytest.fixture
def mount_tmpfs() -> Iterator[MountTmpfs]:
    """``mount_tmpfs(dir, size_bytes)``: a real small filesystem at ``dir`` (a tmpfs),
    unmounted after the test.  Needs root: without it the test is skipped on a
    laptop and fails in CI (a full disk is tested for real, never pretended)."""
    mounted: list[Path] = []

    def mount(path: Path, size: int) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            why = f"cannot mount a tmpfs at {path} (needs root): {proc.stderr.strip()}"
            if IN_CI:
                pytest.fail(why)
            pytest.skip(why)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill_up(directory: Path, leave: int = 0) -> Path:
    """Write ``directory/ballast`` until its filesystem has at most ``leave`` bytes free
    (statvfs); returns the ballast file."""
    ballast = directory / "ballast"
    with open(ballast, "ab") as f:
        while True:
            stats = os.statvfs(directory)
            free = stats.f_bavail * stats.f_frsize
            if free <= leave:
                break
            try:
                f.write(bytes(min(free - leave, 1 << 20)))
                f.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return ballast

"""A live network with one pushed tree, for the daemon's HTTP tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from nix_formats.keys import SecretKey
from nixshard.demo import tree_path_info
from nixshard.localnet import FAULT_ENV, LocalNetwork, new_publisher
from storage_network.nodes.scores import Scores
from tests.support import trees
from tests.support.disk import tmpfs
from tests.support.network import running_network
from uploader.cli import run_push
from uploader.closure import PathInfo

from .gateway_support import Gateway, Upload, make_upload, put_upload, start_gateway
from .upstream_support import FakeCache, Servers, start_fake_cache


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


def pushed_network(root: Path) -> tuple[LocalNetwork, PathInfo, str]:
    """6 nodes (4-of-6, small chunks) holding one pushed tree: the network, the tree's
    path and the publisher's secret-key text."""
    publisher, secret_text = new_publisher("http-tests-1")
    net = running_network(root, publisher=publisher)
    try:
        assert net.network is not None
        info = tree_path_info(make_tree(root))
        asyncio.run(run_push(net.network, [info], SecretKey.parse(secret_text), publisher))
    except BaseException:
        net.close()
        raise
    return net, info, secret_text


def serve_pushed(root: Path) -> Served:
    """Start 6 nodes (4-of-6, small chunks) and a daemon; push one tree."""
    net, info, secret_text = pushed_network(root)
    return Served(net, net.start_daemon(), info, secret_text)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Shared, read-only use: tests must not kill nodes or change data here."""
    s = serve_pushed(tmp_path_factory.mktemp("served"))
    yield s
    s.net.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with uploads on over 6 nodes (:func:`gateway_support.start_gateway`),
    shared by the tests of one module."""
    g = start_gateway(tmp_path_factory.mktemp("gateway"))
    yield g
    g.net.close()


@pytest.fixture(scope="module")
def stored(gw: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Upload:
    """One path uploaded through ``gw`` (about 300 KB NAR, many chunks)."""
    up = make_upload(trees.make_tree(tmp_path_factory.mktemp("t"), "stored", 300_000),
                     gw.key)
    with gw.client() as c:
        nar, info = put_upload(c, up)
    assert nar.status_code == 201, nar.text
    assert info.status_code == 201, info.text
    return up


@pytest.fixture
def own_served(tmp_path: Path) -> Iterator[Served]:
    """A private network for tests that break things."""
    s = serve_pushed(tmp_path)
    yield s
    s.net.close()


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
    net, info, secret_text = pushed_network(root)
    try:
        network = net.network
        assert network is not None
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
    """``mount_tmpfs(dir, size_bytes)``: a real small filesystem at ``dir`` (a tmpfs,
    :func:`tests.support.disk.tmpfs`), unmounted after the test."""
    with ExitStack() as mounted:
        yield lambda path, size: mounted.enter_context(tmpfs(path, size))


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    """Fake upstream caches (:mod:`upstream_support`): ``await servers(prefix="")`` ->
    a running FakeCache, stopped after the test."""
    async with AsyncExitStack() as stack:
        async def start(prefix: str = "") -> FakeCache:
            return await start_fake_cache(stack, prefix)

        yield start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session of the test."""
    async with aiohttp.ClientSession() as s:
        yield s

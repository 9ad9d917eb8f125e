"""A live network with one pushed tree, for the daemon's HTTP tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nix_formats.keys import SecretKey
from nixshard.demo import tree_path_info
from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.network_file import ChunkingParams
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

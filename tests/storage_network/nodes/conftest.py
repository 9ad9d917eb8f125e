"""Live nodes of every kind for the NodeStore contract suite (test_contract.py).

``node`` is parametrized over the kinds of node: ``http`` (our node, a real
process) and ``s3`` (a bucket on a real SeaweedFS server).  Each kind is one
node of a one-node network (k=1, m=0) reached through the registry, so the
URL scheme picks the kind exactly as in production.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork, free_port, new_publisher
from storage_network import Network
from storage_network.config import init_network
from storage_network.wire.write_auth import Publisher

KINDS = ["http"]


@dataclass(frozen=True)
class NodeUnderTest:
    """One live node: its kind, URL, a one-node network over it and an accepted publisher."""

    kind: str
    url: str
    network: Network
    publisher: Publisher


def dead_url(url: str) -> str:
    """``url`` of the same kind, pointing at a loopback port where nothing listens."""
    return re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{free_port()}", url)


@pytest.fixture(scope="module")
def http_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeUnderTest]:
    """Our node as a real process."""
    root: Path = tmp_path_factory.mktemp("contract-http")
    publisher, _ = new_publisher("contract-1")
    with LocalNetwork(root, publisher) as local:
        url = local.add_node().url
        yield NodeUnderTest("http", url, init_network([url], 1, 0, [publisher.public]),
                            publisher)


@pytest.fixture(scope="module", params=KINDS)
def node(request: pytest.FixtureRequest) -> NodeUnderTest:
    """A live node of each kind in turn."""
    found: NodeUnderTest = request.getfixturevalue(f"{request.param}_node")
    return found

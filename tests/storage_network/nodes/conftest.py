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
from nixshard.seaweed import SeaweedServer
from storage_network import Network
from storage_network.config import init_network
from storage_network.wire.write_auth import Publisher

KINDS = ["http", "s3"]
S3_PROFILE = "nixshard-test"


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


@pytest.fixture(scope="session")
def seaweed(seaweed_server: SeaweedServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[SeaweedServer]:
    """The session's SeaweedFS, its keys in AWS files of their own, selected by a
    profile (``S3_PROFILE``) the node URLs name."""
    aws: Path = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in seaweed_server.write_aws_files(aws, S3_PROFILE).items():
            if name != "AWS_PROFILE":
                patch.setenv(name, value)
        yield seaweed_server


def s3_url(server: SeaweedServer, bucket: str, prefix: str) -> str:
    """The node URL of ``prefix`` in ``bucket`` on ``server`` (created when missing)."""
    server.create_bucket(bucket)
    return server.node_url(bucket, prefix, profile=S3_PROFILE)


@pytest.fixture(scope="module")
def s3_node(seaweed: SeaweedServer, request: pytest.FixtureRequest) -> NodeUnderTest:
    """A prefix of a bucket on the session's SeaweedFS, one per test module."""
    publisher, _ = new_publisher("contract-1")
    url = s3_url(seaweed, "contract", request.module.__name__.rpartition(".")[2])
    return NodeUnderTest("s3", url, init_network([url], 1, 0, [publisher.public]), publisher)


@pytest.fixture(scope="module", params=KINDS)
def node(request: pytest.FixtureRequest) -> NodeUnderTest:
    """A live node of each kind in turn."""
    found: NodeUnderTest = request.getfixturevalue(f"{request.param}_node")
    return found

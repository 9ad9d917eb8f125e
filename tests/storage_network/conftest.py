"""Fixtures of the storage_network tests: real node processes via nixshard.localnet.

``live_net`` is one 6-node network (k=4, m=2, small chunks) shared by a test
module; tests on it never kill nodes and use their own payloads.  ``fresh_net``
is a new 6-node network per test, for tests that kill nodes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.config import ChunkingParams
from storage_network.wire.write_auth import Publisher

NODES, K, M = 6, 4, 2
SMALL_CHUNKS = ChunkingParams(min_size=4096, avg_size=16384, max_size=65536)
NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"


@contextmanager
def running_network(root: Path, count: int = NODES, publisher: Publisher | None = None,
                    node_env: Mapping[str, str] | None = None) -> Iterator[LocalNetwork]:
    """``count`` started nodes (k=4, m=2, small chunks) under ``root``; stopped afterwards."""
    with LocalNetwork(root, publisher or new_publisher("sn-test-1")[0]) as local:
        local.start_nodes(count, K, M, SMALL_CHUNKS, node_env=node_env)
        yield local


@pytest.fixture(scope="module")
def live_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """A started 6-node network, shared by the tests of one module."""
    with running_network(tmp_path_factory.mktemp("live-net")) as local:
        yield local


@pytest.fixture
def fresh_net(tmp_path: Path) -> Iterator[LocalNetwork]:
    """A started 6-node network of this test alone (it may kill nodes)."""
    with running_network(tmp_path / "net") as local:
        yield local


def payload(seed: int, size: int) -> bytes:
    """``size`` bytes: random runs mixed with repetitive runs (compressible, no dedup inside)."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(rng.randrange(1000, 9000))
        out += bytes([rng.randrange(256)]) * rng.randrange(100, 3000) + rng.randbytes(8)
    return bytes(out[:size])


def record_key(seed: int) -> str:
    """A record key of the form nodes accept (32 nix32 characters)."""
    rng = random.Random(seed)
    return "".join(rng.choice(NIX32) for _ in range(32))

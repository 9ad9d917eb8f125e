"""The test network: storage-node processes on 127.0.0.1, 4-of-6 with small chunks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.config import ChunkingParams
from storage_network.wire.write_auth import Publisher

NODES, K, M = 6, 4, 2
SMALL_CHUNKS = ChunkingParams(min_size=4096, avg_size=16384, max_size=65536)
"""Chunks of 4-64 KiB: a few hundred kB of test data make many chunks."""


def running_network(root: Path, count: int = NODES, publisher: Publisher | None = None,
                    node_env: Mapping[str, str] | None = None) -> LocalNetwork:
    """``count`` started nodes (k=4, m=2, small chunks) under ``root``, with their network
    file; use it as a context manager (or ``close()`` it) to stop them.

    Args:
        publisher: the key the nodes accept (default: a fresh ``sn-test-1``).
        node_env: environment entries for every node.
    """
    local = LocalNetwork(root, publisher or new_publisher("sn-test-1")[0])
    local.start_nodes(count, K, M, SMALL_CHUNKS, node_env=node_env)
    return local

"""Rendezvous (highest-random-weight) placement of shards and records.

Every node gets a score SHA-256(node id || 0x00 || key) per key; nodes sorted
by falling score are the key's *ranking*.  Shard i of a chunk lives on the
i-th node of the ranking of the chunk id (or, when that node failed, on a
node further down); a record lives on ``record_replicas`` nodes of the
*window* of its record key, the first ``record_replicas + m`` nodes of its
ranking (docs/consistency.md).  Adding or removing a node moves only the
keys whose top ranks it enters or leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from storage_network.config import Network, NodeInfo


def ranking(nodes: Sequence[NodeInfo], key: bytes) -> list[NodeInfo]:
    """The nodes ordered by rendezvous score for ``key`` (best first)."""
    return sorted(nodes, key=lambda n: hashlib.sha256(n.id.encode() + b"\x00" + key).digest(),
                  reverse=True)


def shard_nodes(nodes: Sequence[NodeInfo], chunk_id: bytes, n: int) -> list[NodeInfo]:
    """The node for each of the ``n`` shards of the chunk ``chunk_id`` (index = shard index)."""
    return ranking(nodes, chunk_id)[:n]


def record_nodes(nodes: Sequence[NodeInfo], record_key: str) -> list[NodeInfo]:
    """All nodes in the ranking order of ``record_key`` (its window first)."""
    return ranking(nodes, b"record:" + record_key.encode())


def window_size(network: Network) -> int:
    """Nodes in a record's window: ``record_replicas + m``."""
    return network.record_replicas + network.m


def record_window(network: Network, record_key: str) -> list[NodeInfo]:
    """The window of ``record_key``: the first :func:`window_size` nodes of its
    ranking (all nodes when there are fewer)."""
    return record_nodes(network.nodes, record_key)[:window_size(network)]

"""Placement of shards and records: rendezvous hashing, or placement groups.

The network file's ``placement`` picks how a chunk's shards are placed
(:func:`chunk_ranking`, :func:`chunk_homes`):

- ``rendezvous`` (the scheme of every file that names none): rank every node
  per chunk, as below.  The cost per chunk grows with the node count (about
  1.3 µs per node);
- ``groups``: the chunk's placement group's ranking
  (:mod:`storage_network.nodes.placement_groups`): the cost per chunk does not
  depend on the node count, homes are weighted by capacity and spread over
  operators and zones, and only ``active`` nodes become homes.

Records are placed by rendezvous hashing under both schemes (:func:`record_nodes`).

Rendezvous: every node gets a score SHA-256(node id || 0x00 || key) per key; nodes sorted
by falling score are the key's *ranking*.  Shard i of a chunk lives on the
i-th node of the ranking of the chunk id (or, when that node failed, on a
node further down); a record lives on ``record_replicas`` nodes of the
*window* of its record key, the first ``record_replicas + m`` nodes of its
ranking (docs/consistency.md).  Adding or removing a node moves only the
keys whose top ranks it enters or leaves.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from storage_network.config import Network, NodeInfo

if TYPE_CHECKING:
    from storage_network.nodes.placement_groups import GroupPlacement

PREFIX_MIN = 64
"""Places of a group's ranking in level order (spread), at least; see :func:`group_placement`."""
_CACHED = 4  # node sets whose group placements are kept (a network file and its successor)
_cache: list[tuple[tuple[NodeInfo, ...], int, GroupPlacement]] = []
_cache_lock = threading.Lock()


def ranking(nodes: Sequence[NodeInfo], key: bytes) -> list[NodeInfo]:
    """The nodes ordered by rendezvous score for ``key`` (best first)."""
    return sorted(nodes, key=lambda n: hashlib.sha256(n.id.encode() + b"\x00" + key).digest(),
                  reverse=True)


def shard_nodes(nodes: Sequence[NodeInfo], chunk_id: bytes, n: int) -> list[NodeInfo]:
    """The node for each of the ``n`` shards of the chunk ``chunk_id`` (index = shard
    index) under rendezvous hashing; :func:`chunk_homes` follows the network's scheme."""
    return ranking(nodes, chunk_id)[:n]


def group_placement(network: Network) -> GroupPlacement:
    """The placement groups of ``network``'s node set, cached per node set.

    The cache is keyed by the identity of ``network.nodes`` (the tuple is kept
    alive by the cache, so an id is never reused while cached); a network
    with the same tuple, e.g. one made by :func:`dataclasses.replace`, shares
    the groups.  Each group ranks ``max(PREFIX_MIN, 2 n)`` places in level
    order, so homes and first spares are spread.
    """
    from storage_network.nodes.placement_groups import GroupPlacement  # numpy: only for groups

    nodes, prefix = network.nodes, max(PREFIX_MIN, 2 * network.n)
    with _cache_lock:
        for held, held_prefix, placement in _cache:
            if held is nodes and held_prefix == prefix:
                return placement
    placement = GroupPlacement(nodes, prefix)
    with _cache_lock:
        _cache.insert(0, (nodes, prefix, placement))
        del _cache[_CACHED:]
    return placement


def chunk_ranking(network: Network, chunk_id: bytes) -> Sequence[NodeInfo]:
    """The ranking of the chunk ``chunk_id`` under ``network.placement``: shard i's
    home is place i; spares follow (see the module docstring).

    ``rendezvous`` gives a new list: the active nodes by score, then the draining
    ones by score (they are read, never written to), no removed node; ``groups`` the
    group's shared :class:`~storage_network.nodes.placement_groups.GroupRanking`
    (read it, do not change it).
    """
    if network.placement == "groups":
        return group_placement(network).ranking(chunk_id)
    active = [n for n in network.nodes if n.state == "active"]
    if len(active) == len(network.nodes):
        return ranking(network.nodes, chunk_id)
    draining = [n for n in network.nodes if n.state == "draining"]
    return ranking(active, chunk_id) + ranking(draining, chunk_id)


def chunk_homes(network: Network, chunk_id: bytes, n: int) -> list[NodeInfo]:
    """The home of each of the ``n`` shards of ``chunk_id`` (index = shard index),
    under ``network.placement``; fewer when the ranking is shorter."""
    return list(chunk_ranking(network, chunk_id)[:n])


def record_nodes(nodes: Sequence[NodeInfo], record_key: str) -> list[NodeInfo]:
    """The nodes (but removed ones) in the ranking order of ``record_key`` (its
    window first)."""
    return ranking([n for n in nodes if n.state != "removed"], b"record:" + record_key.encode())


def window_size(network: Network) -> int:
    """Nodes in a record's window: ``record_replicas + m``."""
    return network.record_replicas + network.m


def record_window(network: Network, record_key: str) -> list[NodeInfo]:
    """The window of ``record_key``: the first :func:`window_size` nodes of its
    ranking (all nodes when there are fewer)."""
    return record_nodes(network.nodes, record_key)[:window_size(network)]

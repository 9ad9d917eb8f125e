"""Membership changes: a network file with a node added or removed.

Rendezvous hashing moves only the keys whose top ranks the node enters or
leaves.  Readers keep working through the change: they find shards by
asking down the ranking (:mod:`storage_network.read.locate`), so a shard one
place off its new home is still found; ``nixshard repair`` then rebuilds
what a removed node held.  Remove nodes one repair at a time, never more
than m between two repairs.
"""

from __future__ import annotations

import dataclasses

from storage_network.config import Network, NodeInfo, default_record_replicas
from storage_network.errors import NetworkFileError


def with_node(network: Network, node: NodeInfo) -> Network:
    """``network`` plus ``node``.

    Raises:
        NetworkFileError: the id or URL is already listed, or the node is invalid.
    """
    for known in network.nodes:
        if known.id == node.id or known.url == node.url.rstrip("/"):
            raise NetworkFileError(f"node {known.id} ({known.url}) is already in the network")
    node = dataclasses.replace(node, url=node.url.rstrip("/"))
    return dataclasses.replace(network, nodes=(*network.nodes, node)).validate()


def without_node(network: Network, node_id: str) -> Network:
    """``network`` minus the node ``node_id``.

    ``record_replicas`` shrinks to the node count if needed.

    Raises:
        NetworkFileError: no such node, or too few nodes would remain for k + m.
    """
    nodes = tuple(n for n in network.nodes if n.id != node_id)
    if len(nodes) == len(network.nodes):
        raise NetworkFileError(f"no node {node_id!r} in the network")
    if len(nodes) < network.n:
        raise NetworkFileError(
            f"removing {node_id} leaves {len(nodes)} nodes, fewer than k + m = {network.n}")
    replicas = min(network.record_replicas, max(len(nodes), 1))
    if replicas < network.record_replicas:
        replicas = default_record_replicas(len(nodes), network.m)
    return dataclasses.replace(network, nodes=nodes, record_replicas=replicas).validate()

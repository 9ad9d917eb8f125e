"""The worst losses a network's placement survives: whole operators, any nodes.

A stripe of n shards coded k-of-n loses nothing while at most n - k = m of its
shards are lost.  Losing every node of j operators
(:attr:`~storage_network.config.NodeInfo.domain`) loses, of one stripe, the
sum of those operators' shard counts in it; the worst j operators are the j
with the most shards.  So a placement survives the loss of any j operators
when, for every possible stripe, the j largest per-operator shard counts sum
to at most m.  Per scheme (:mod:`storage_network.nodes.placement`):

- ``groups``: exact, over the homes of every placement group (each chunk's
  homes are its group's);
- ``rendezvous``: over every stripe rendezvous hashing can make: any n of
  the nodes, so an operator may hold min(its nodes, n) shards of a stripe.

Shards moved to spares by pushes or repair are not counted: this is the
placement's promise, not an inventory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from storage_network.config import Network
from storage_network.nodes.placement import group_placement


@dataclass(frozen=True)
class LossTolerance:
    """What every stripe of a network survives.

    Attributes:
        operators: whole operators any of which (that many at once) may be lost.
        nodes: nodes any of which (that many at once) may be lost: m, less when
            a stripe cannot be given n distinct nodes.
    """

    operators: int
    nodes: int

    def sentence(self) -> str:
        """E.g. ``survives the loss of any 1 operator, or any 2 nodes``."""
        nodes = f"any {self.nodes} node{'' if self.nodes == 1 else 's'}"
        if self.operators == 0:
            return f"survives the loss of {nodes} (not of any whole operator)"
        return (f"survives the loss of any {self.operators} "
                f"operator{'' if self.operators == 1 else 's'}, or {nodes}")

    def to_json(self) -> dict[str, int]:
        """``{"operators": ..., "nodes": ...}``."""
        return {"operators": self.operators, "nodes": self.nodes}


def operators_survived(counts: Iterable[int], spare: int) -> int:
    """The largest j such that the j largest of ``counts`` (shards per operator of
    one stripe) sum to at most ``spare`` (shards the stripe may lose)."""
    total, survived = 0, 0
    for count in sorted(counts, reverse=True):
        total += count
        if total > spare:
            break
        survived += 1
    return survived


def loss_tolerance(network: Network) -> LossTolerance:
    """The worst case ``network``'s placement survives (see the module docstring).

    Under ``groups`` this computes every group's ranking (seconds at 10,000 nodes,
    once per node set).
    """
    k, n = network.k, network.n
    if network.placement != "groups":
        per_operator = Counter(node.domain for node in network.nodes)
        placed = min(n, len(network.nodes))
        counts = [min(count, placed) for count in per_operator.values()]
        spare = max(0, placed - k)
        return LossTolerance(operators_survived(counts, spare), spare)
    groups = group_placement(network)
    operators, nodes = len(network.nodes), network.m
    for g in range(groups.groups):
        homes = groups.group(g)[:n]
        spare = max(0, len(homes) - k)
        nodes = min(nodes, spare)
        operators = min(operators,
                        operators_survived(Counter(h.domain for h in homes).values(), spare))
    return LossTolerance(operators, nodes)

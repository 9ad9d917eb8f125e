"""Where repair writes a stripe's missing shards: :func:`plan_stripe`.

Each missing shard i goes to its *target*: its home (position i of the
chunk's rendezvous ranking) if that node answers and holds no good shard of
the stripe, else the first node past position n of the ranking that answers
and holds none (then any other such node, in ranking order).  Targets depend
only on the ranking, on which nodes answer and on what they hold, so a
repair run is idempotent (:mod:`storage_network.upkeep.repair`).

Only ``active`` nodes take shards.  A shard held only by nodes that are not
active (a ``draining`` node of the network map) counts as missing: it is
rebuilt (read from any holder, the draining one included) on an active
node, so repair empties a draining node of every shard still needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage_network.config import NodeInfo
from storage_network.upkeep.record_table import Stripe


@dataclass
class StripePlan:
    """What one stripe needs: missing shard indices and the node chosen for each.

    Attributes:
        held: shard indices with a good holder (active or not).
        targets: missing index -> the node to write it to.
        unplaceable: missing indices with no free node.
    """

    stripe: Stripe
    held: int
    targets: dict[int, NodeInfo]
    unplaceable: list[int]


def missing_indices(stripe: Stripe, holders: dict[int, list[NodeInfo]]) -> list[int]:
    """Shard indices of ``stripe`` (ascending) that no ``active`` node holds a good copy
    of (``holders``: shard index -> nodes holding one): what repair rebuilds, also
    those held only by a draining node."""
    return [i for i in range(stripe.n)
            if not any(node.state == "active" for node in holders.get(i, ()))]


def plan_stripe(stripe: Stripe, holders: dict[int, list[NodeInfo]], rank: Sequence[NodeInfo],
                unreachable: set[str] | dict[str, str]) -> StripePlan:
    """Choose a target node for each missing shard of ``stripe`` (see the module docstring).

    Args:
        holders: shard index -> nodes holding a good copy.
        rank: the chunk's rendezvous ranking.
        unreachable: ids of nodes that do not answer.

    First every missing shard whose home answers and holds nothing of the
    stripe goes home; then the others, in index order, take the first such
    node past position n of the ranking, then any other such node in
    ranking order.
    """
    used = {node.id for nodes in holders.values() for node in nodes}
    missing = missing_indices(stripe, holders)
    held = sum(1 for i in range(stripe.n) if holders.get(i))

    def free(node: NodeInfo) -> bool:
        return node.state == "active" and node.id not in used and node.id not in unreachable

    targets: dict[int, NodeInfo] = {}
    for index in missing:
        if index < len(rank) and free(rank[index]):
            targets[index] = rank[index]
            used.add(rank[index].id)
    unplaceable = []
    for index in missing:
        if index in targets:
            continue
        node = next((c for c in [*rank[stripe.n:], *rank[:stripe.n]] if free(c)), None)
        if node is None:
            unplaceable.append(index)
        else:
            targets[index] = node
            used.add(node.id)
    return StripePlan(stripe, held, targets, unplaceable)

"""What each node has yet to deliver to this client, and how fast it delivers.

The batched read path (:mod:`storage_network.read.batch_fetch`) asks each
chunk's first k shards of the nodes expected to deliver soonest: a node's
*finish time* is the bytes asked of it and not yet received divided by the
rate its recent batch answers came at.  A chunk's picks are the k holders of
distinct shards with the earliest finish times, a parity shard counting
:data:`PARITY_SECONDS` later than it is (rebuilding from parity costs a
decode that joining the data shards does not).  So the nodes' queues stay
within about that much of each other: on distant, capped links (where a
node's share of a transfer takes seconds) every node's link is kept busy to
the end; on fast links (where a whole queue drains in milliseconds) the
data shards are read; a node with a slower link (or a longer queue) gets
fewer picks.  While no rate is known every node's finish time is 0.
"""

from __future__ import annotations

from collections import defaultdict

PARITY_SECONDS = 0.005
"""How much sooner a parity shard's node must be expected to finish than a data
shard's node for the parity shard to be picked instead."""
WEIGHT = 0.3
"""Weight of the newest answer in a node's rate (exponential moving average)."""


class NodeFlow:
    """Per node: bytes asked and not yet received, and an average delivery rate."""

    def __init__(self) -> None:
        self.pending: defaultdict[str, int] = defaultdict(int)
        self.rate: dict[str, float] = {}

    def asked(self, node_id: str, nbytes: int) -> None:
        """``nbytes`` more are expected from ``node_id``."""
        self.pending[node_id] += nbytes

    def answered(self, node_id: str, asked: int, got: int, seconds: float) -> None:
        """A request for ``asked`` bytes ended: ``got`` bytes came in ``seconds`` from
        when it was sent (``got`` 0: it failed, the rate is left as it was)."""
        self.pending[node_id] = max(0, self.pending[node_id] - asked)
        if got > 0 and seconds > 0:
            now = got / seconds
            old = self.rate.get(node_id)
            self.rate[node_id] = now if old is None else old + WEIGHT * (now - old)

    def finish(self, node_id: str) -> float:
        """Seconds until the node has sent what it was asked (0 while its rate is unknown)."""
        rate = self.rate.get(node_id)
        return self.pending[node_id] / rate if rate else 0.0

    def cost(self, node_id: str, parity: bool) -> float:
        """The node's :meth:`finish` time, plus :data:`PARITY_SECONDS` for a parity shard."""
        return self.finish(node_id) + (PARITY_SECONDS if parity else 0.0)

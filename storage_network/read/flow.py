"""What each node has yet to deliver to this client, and how fast it delivers.

The batched read path (:mod:`storage_network.read.batch_fetch`) asks each
chunk's first k shards of the nodes expected to deliver soonest: a node's
*finish time* is the bytes asked of it and not yet received divided by the
rate its recent batch answers came at.  On equal links the finish times stay
within one :data:`STEP` of each other and the usual order (data shards before
parity) decides; a node with a slower link (or a longer queue) falls a step
or more behind and its shards are taken from the others, parity included.
"""

from __future__ import annotations

from collections import defaultdict

STEP = 0.25
"""Seconds: finish times are compared in steps of this size."""
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

    def step(self, node_id: str) -> int:
        """The node's finish time in :data:`STEP` units (0 while its rate is unknown)."""
        rate = self.rate.get(node_id)
        if not rate:
            return 0
        return int(self.pending[node_id] / rate / STEP)

"""Durability figures: the odds of losing data between two repairs.

Model: within one repair interval every node is lost independently with
probability ``p`` (disk dies, operator leaves, node lies and is caught).
A chunk coded k-of-n survives while at most ``m = n - k`` of its n shards
are lost, so (design.md, Parameters)::

    P(chunk lost) = sum_{i = m+1}^{n} C(n, i) p^i (1 - p)^(n - i)

r-fold replication loses a chunk when all r copies go: ``p^r``.  Chunks are
placed independently (rendezvous hashing per chunk), so a NAR of c chunks
is lost when any of them is: ``1 - (1 - P)^c``, computed as
``-expm1(c * log1p(-P))`` so tiny probabilities keep their digits.  Chunks
of one NAR share nodes (under placement groups, every chunk of a group has
the same homes), so their losses are correlated and this figure is an upper
bound; on a network of exactly n nodes every chunk sits on the
same nodes and a NAR is lost exactly when one chunk is.  Losses that are
not independent, such as every node of one operator at once, are what
:mod:`storage_network.nodes.placement_tolerance` counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def chunk_loss(k: int, m: int, p: float) -> float:
    """Probability that a k-of-(k+m) chunk loses more than m shards (``p`` per node).

    Raises:
        ValueError: ``k < 1``, ``m < 0`` or ``p`` outside [0, 1].
    """
    if k < 1 or m < 0:
        raise ValueError(f"need k >= 1 and m >= 0, got k={k} m={m}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    n = k + m
    return math.fsum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(m + 1, n + 1))


def replication_loss(copies: int, p: float) -> float:
    """Probability that all ``copies`` replicas of a chunk are lost."""
    if copies < 1 or not 0.0 <= p <= 1.0:
        raise ValueError(f"need copies >= 1 and p in [0, 1], got {copies}, {p}")
    return p ** copies


def any_lost(per_chunk: float, chunks: int) -> float:
    """Probability that at least one of ``chunks`` independent chunks is lost."""
    if per_chunk >= 1.0:
        return 1.0 if chunks else 0.0
    return -math.expm1(chunks * math.log1p(-per_chunk))


@dataclass(frozen=True)
class DurabilityRow:
    """Figures for one ``p``: per chunk and per NAR, for k-of-n and for replication."""

    p: float
    chunk: float
    nar: float
    replica_chunk: float
    replica_nar: float


def durability_table(k: int, m: int, ps: list[float], nar_bytes: int, avg_chunk_bytes: int,
                     copies: int = 3, nodes: int | None = None) -> list[DurabilityRow]:
    """One :class:`DurabilityRow` per ``p``; a NAR of ``nar_bytes`` has
    ``ceil(nar_bytes / avg_chunk_bytes)`` chunks (bytes).

    ``nodes``: the network's node count when known; with exactly k + m
    nodes the NAR figure equals the chunk figure (see the module docstring).
    """
    chunks = max(1, math.ceil(nar_bytes / avg_chunk_bytes))
    if nodes is not None and nodes <= k + m:
        chunks = 1
    rows = []
    for p in ps:
        ec, rep = chunk_loss(k, m, p), replication_loss(copies, p)
        rows.append(DurabilityRow(p, ec, any_lost(ec, chunks), rep, any_lost(rep, chunks)))
    return rows

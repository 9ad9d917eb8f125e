"""Configuration of ``nixshard serve`` (built at the entry point only)."""

from __future__ import annotations

from dataclasses import dataclass

from storage_network.network_client import DEFAULT_HEDGE_AFTER
from storage_network.network_file import Network
from storage_network.scores import Scores


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the cache daemon.

    ``priority`` is the ``Priority:`` of nix-cache-info (lower wins;
    cache.nixos.org is 40).  ``node_timeout`` is seconds per node request;
    ``prefetch`` chunks are fetched ahead of the one being sent;
    ``record_cache`` opened records are kept in memory.  ``scores`` are the
    nodes' audit scores (loaded by the CLI; None: every node counts as 1.0),
    which order reads among nodes in good standing.  ``hedge_after`` is
    seconds a chunk waits for its first k shards before one more node is
    asked (see :mod:`storage_network.fetch`).
    """

    network: Network
    priority: int = 30
    node_timeout: float = 10.0
    prefetch: int = 8
    record_cache: int = 4096
    scores: Scores | None = None
    hedge_after: float = DEFAULT_HEDGE_AFTER

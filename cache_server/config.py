"""Configuration of ``nixshard serve`` (built at the entry point only)."""

from __future__ import annotations

from dataclasses import dataclass

from storage_network.network_file import Network


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the cache daemon.

    ``priority`` is the ``Priority:`` of nix-cache-info (lower wins;
    cache.nixos.org is 40).  ``node_timeout`` is seconds per node request;
    ``prefetch`` chunks are fetched ahead of the one being sent;
    ``record_cache`` opened records are kept in memory.
    """

    network: Network
    priority: int = 30
    node_timeout: float = 10.0
    prefetch: int = 8
    record_cache: int = 4096

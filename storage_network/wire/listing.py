"""Listing rows: what a node says it holds (``GET /shards``, ``GET /records`` on our node,
object listings on a bucket), with the caps a reader applies to a listing.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LISTING_LINE = 256
"""Longest line of a listing answer (bytes)."""
MAX_LISTING_ENTRIES = 20_000_000
"""Most lines a listing may have: 20 million shards (about 1.3 TB of 64 KiB shards).
A node listing more is answering nonsense (its listing is refused)."""


@dataclass(frozen=True)
class ListedShard:
    """A shard a node lists: id, size (bytes), mtime (unix seconds)."""

    id: str
    size: int
    mtime: float


@dataclass(frozen=True)
class ListedRecord:
    """A record a node lists: key, size (bytes), mtime and last read time (unix seconds)."""

    key: str
    size: int
    mtime: float
    atime: float

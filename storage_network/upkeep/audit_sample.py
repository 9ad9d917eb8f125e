"""A uniform sample of the shards a node should hold, kept in memory of the sample's size.

The audit must pick, for every node, a uniform sample without replacement of
the shards it should hold, while the records and listings that say which
shards those are stream past once (:mod:`storage_network.upkeep.record_scan`).
A bottom-k sketch does it: every shard id gets a salted hash (BLAKE2b-64
keyed with a salt drawn for the run), and a node's sample is the ``size``
ids with the smallest hashes among those offered.  The same id offered twice
(a chunk two records share, a shard both placed and listed) hashes the same,
so repeats change nothing; the salt makes the hashes unknown to the nodes
before the run, so a node cannot guess which of its shards will be asked.

The sketch also estimates how many distinct ids it was offered: exactly while
fewer than ``size`` were, else ``(size - 1) / (h / 2^64)`` with ``h`` the
largest kept hash (the K-minimum-values estimator of Bar-Yossef et al., 2002;
relative error about ``1 / sqrt(size - 2)``).

Memory: ``size`` ids per sketch, whatever the number offered.
"""

from __future__ import annotations

import hashlib
import heapq

_SPACE = float(1 << 64)


def salted_hash(salt: bytes, name: str) -> int:
    """The 64-bit hash of ``name`` under ``salt`` (BLAKE2b keyed, 8 bytes, big-endian).

    Raises:
        ValueError: a salt longer than 64 bytes.
    """
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8, key=salt).digest(),
                          "big")


class BottomSample:
    """The ``size`` distinct names with the smallest salted hashes among those offered.

    Args:
        size: names kept (>= 1).
        salt: the run's hash key (the same for every sketch of a run, so one
            name has one hash everywhere).
    """

    def __init__(self, size: int, salt: bytes) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size}")
        self.size, self.salt = size, salt
        self._heap: list[tuple[int, str]] = []  # (-hash, name): the largest kept hash first
        self._names: set[str] = set()

    @property
    def full(self) -> bool:
        """Whether ``size`` names are kept (a new one must beat the largest kept hash)."""
        return len(self._heap) >= self.size

    @property
    def threshold(self) -> int:
        """The largest kept hash when full (names hashing above it are never kept); else 2^64."""
        return -self._heap[0][0] if self.full else 1 << 64

    def offer(self, name: str, hashed: int | None = None) -> None:
        """Consider ``name`` (its salted hash when the caller has it)."""
        h = salted_hash(self.salt, name) if hashed is None else hashed
        if name in self._names or h >= self.threshold:
            return
        if self.full:
            _, dropped = heapq.heapreplace(self._heap, (-h, name))
            self._names.discard(dropped)
        else:
            heapq.heappush(self._heap, (-h, name))
        self._names.add(name)

    def __len__(self) -> int:
        """How many names are kept (at most ``size``)."""
        return len(self._heap)

    def hashed(self) -> list[tuple[int, str]]:
        """``(hash, name)`` of the kept names, by rising hash."""
        return [(-neg, name) for neg, name in sorted(self._heap, reverse=True)]

    def names(self) -> list[str]:
        """The kept names, by rising hash (a uniform random order of a uniform sample)."""
        return [name for _, name in self.hashed()]

    def distinct(self) -> int:
        """How many distinct names were offered: exact below ``size``, else the estimate
        of the module docstring."""
        if not self.full:
            return len(self)
        if self.size < 2:
            return self.size
        return max(self.size, round((self.size - 1) * _SPACE / (self.threshold + 1)))

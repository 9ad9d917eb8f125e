"""Placement groups: the ``groups`` placement scheme (``placement = "groups"``).

A chunk belongs to one of :data:`GROUPS` placement groups, chosen by its id:
``SHA-256(b"nixshard-group\\x00" || chunk id)``, first 8 bytes big-endian, mod
:data:`GROUPS`.  Every group has one *ranking* of the network's nodes, computed
from the node set alone (lazily on first use, then cached per node set), so
pushers, gateways, audit and repair all compute the same; the cost per chunk is
one SHA-256 and a list lookup, whatever the node count.

A group's ranking (:class:`GroupRanking`):

1. the *prefix*: the first ``prefix`` active nodes in *level order*.  Each node
   gets a weighted rendezvous score for the group, ``-ln(u) / weight`` (smaller
   is better; ``u`` in (0, 1) from a 64-bit mix of ``SHA-256(node id)`` and the
   group number), so a node of weight 2 wins about twice as often.  Inside its
   zone a node's *zone level* is its place by score; inside its operator
   (:attr:`~storage_network.config.NodeInfo.domain`) its *level* is its place by
   (zone level, score).  Level order is (level, score): first the best node of
   every operator, then the second best of every operator, and so on.  So every
   prefix of the ranking, in particular the n homes of a stripe, spreads over
   operators as evenly as the node set allows (no operator holds more than the
   smallest cap c with ``sum over operators of min(nodes, c) >= n``, which is
   ``ceil(n / operators)`` whenever every operator runs that many active
   nodes), and inside an operator over zones;
2. the other active nodes, in the order of their ids rotated by the group
   number (a cheap deterministic order: no group stores all nodes);
3. the ``draining`` nodes, by id: readers still find their shards (they ask
   down the ranking), but a writer walking past the n homes meets every active
   node first.  ``removed`` nodes are in no ranking.

When fewer than n nodes are active, the first n places of a ranking include
draining nodes (a stripe needs n distinct nodes).

Determinism: node order never depends on the file's order, Python's ``hash()``
or set order; ties of score fall to the node id.  The scores are IEEE doubles;
with equal weights they are exact integers (no logarithm), with unequal weights
they use ``numpy.log``, whose last bit may differ between platforms: two nodes'
scores would have to agree to about 1e-16 for that to change an order.

Adding or removing one node moves a home only in the groups whose prefix it
enters or leaves (about n / nodes of them), plus the places after it there.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np
import numpy.typing as npt

from storage_network.config import NodeInfo

GROUPS = 8192
"""Placement groups of every ``groups`` network (fixed: changing it moves every chunk)."""

GROUP_KEY = b"nixshard-group\x00"

_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def group_of(chunk_id: bytes, groups: int = GROUPS) -> int:
    """The placement group (``0 <= g < groups``) of the chunk ``chunk_id``."""
    digest = hashlib.sha256(GROUP_KEY + chunk_id).digest()
    return int.from_bytes(digest[:8], "big") % groups


def node_hash(node_id: str) -> int:
    """The 64-bit seed of a node's scores: ``SHA-256(node id)``, first 8 bytes big-endian."""
    return int.from_bytes(hashlib.sha256(node_id.encode()).digest()[:8], "big")


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finalizer over an array (uint64 arithmetic, wrapping)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class GroupRanking(Sequence[NodeInfo]):
    """One group's ranking (see the module docstring), shared by all its chunks.

    ``ranking[i]`` is the node of place i (O(1) in the prefix, O(prefix) past
    it); iteration costs O(1) per node; slices give new lists.  Nothing per
    chunk is copied.

    Args:
        prefix: the first places (level order).
        skipped: the places of the prefix's nodes in ``active`` rotated by
            ``start``, sorted.
        active: every active node, by id.
        start: where the rotation of ``active`` starts (the group number mod
            its length).
        draining: the draining nodes, by id (the last places).
    """

    def __init__(self, prefix: tuple[NodeInfo, ...], skipped: tuple[int, ...],
                 active: tuple[NodeInfo, ...], start: int,
                 draining: tuple[NodeInfo, ...]) -> None:
        self.prefix = prefix
        self._skipped = skipped  # rotated positions (sorted) of the prefix among ``active``
        self._active, self._start, self._draining = active, start, draining
        self._rest = len(active) - len(prefix)

    def __len__(self) -> int:
        return len(self._active) + len(self._draining)

    def _rotated(self, t: int) -> NodeInfo:
        """The t-th active node past the prefix."""
        r = t
        for pos in self._skipped:
            if pos > r:
                break
            r += 1
        return self._active[(self._start + r) % len(self._active)]

    @overload
    def __getitem__(self, index: int) -> NodeInfo: ...

    @overload
    def __getitem__(self, index: slice) -> list[NodeInfo]: ...

    def __getitem__(self, index: int | slice) -> NodeInfo | list[NodeInfo]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1 and stop <= len(self.prefix):
                return list(self.prefix[start:stop])
            if step == 1:
                return list(itertools.islice(self, start, stop))
            return [self[i] for i in range(start, stop, step)]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("ranking index out of range")
        if index < len(self.prefix):
            return self.prefix[index]
        index -= len(self.prefix)
        if index < self._rest:
            return self._rotated(index)
        return self._draining[index - self._rest]

    def __iter__(self) -> Iterator[NodeInfo]:
        yield from self.prefix
        skipped = set(self._skipped)
        count = len(self._active)
        for r in range(count):
            if r not in skipped:
                yield self._active[(self._start + r) % count]
        yield from self._draining

    def __repr__(self) -> str:
        return f"GroupRanking({[n.id for n in self.prefix]} + {len(self) - len(self.prefix)})"


class GroupPlacement:
    """The rankings of every placement group over one node set.

    Args:
        nodes: the network's nodes (any order; ``removed`` ones are ignored).
        prefix: places per group ranked by level order (see the module
            docstring); at most the active node count is used.  Callers pass
            at least twice the stripe width, so homes and the first spares are
            spread.
        groups: the group count (:data:`GROUPS` for real networks).

    Raises:
        ValueError: ``prefix < 1``, ``groups < 1``, two nodes with one id, or a
            weight that is not a positive finite number.
    """

    def __init__(self, nodes: Sequence[NodeInfo], prefix: int, groups: int = GROUPS) -> None:
        if prefix < 1 or groups < 1:
            raise ValueError(f"need prefix >= 1 and groups >= 1, got {prefix}, {groups}")
        if len({n.id for n in nodes}) != len(nodes):
            raise ValueError("node ids must be distinct")
        bad = [n.id for n in nodes if not 0 < n.weight < float("inf")]
        if bad:
            raise ValueError(f"nodes {bad} need a positive finite weight")
        self.groups = groups
        # layout: active nodes by (operator, zone, id), so each failure domain is one run
        active = sorted((n for n in nodes if n.state == "active"),
                        key=lambda n: (n.domain, n.zone, n.id))
        self._layout = tuple(active)
        self.active = tuple(sorted(active, key=lambda n: n.id))
        self.draining = tuple(sorted((n for n in nodes if n.state == "draining"),
                                     key=lambda n: n.id))
        self.prefix = min(prefix, len(active))
        by_id = {n.id: i for i, n in enumerate(self.active)}
        self._id_pos = np.array([by_id[n.id] for n in active], dtype=np.int64)
        self._seeds = np.array([node_hash(n.id) for n in active], dtype=np.uint64)
        weights = np.array([n.weight for n in active], dtype=np.float64)
        self._weights = None if len({n.weight for n in active}) <= 1 else weights
        self._ops = _runs([n.domain for n in active])
        zones = [(n.domain, n.zone or "\x00" + n.id) for n in active]
        self._zones = _runs(zones) if any(n.zone for n in active) else None
        self._cache: list[GroupRanking | None] = [None] * groups
        self._lock = threading.Lock()

    def ranking(self, chunk_id: bytes) -> GroupRanking:
        """The ranking of the chunk ``chunk_id`` (its group's)."""
        return self.group(group_of(chunk_id, self.groups))

    def group(self, g: int) -> GroupRanking:
        """The ranking of group ``g`` (computed on first use, then cached)."""
        found = self._cache[g]
        if found is None:
            found = self._compute(g)
            with self._lock:
                self._cache[g] = found
        return found

    def warm(self) -> None:
        """Compute every group's ranking now (what the first use of each would do)."""
        for g in range(self.groups):
            self.group(g)

    def _scores(self, g: int) -> npt.NDArray[np.float64] | npt.NDArray[np.int64]:
        """Per active node (layout order) its score for group ``g``; smaller is better."""
        salt = np.uint64(((g + 1) * _GOLDEN) & _MASK64)
        bits = _mix(self._seeds + salt) >> np.uint64(11)  # 53 bits: u = (bits + 0.5) / 2^53
        if self._weights is None:
            # -ln(u) falls as bits rise: rank by the exact integer instead
            return (np.int64(1 << 53) - bits.astype(np.int64))
        u = (bits.astype(np.float64) + 0.5) * 2.0 ** -53
        scores: npt.NDArray[np.float64] = -np.log(u) / self._weights
        return scores

    def _score_ranks(self, g: int) -> npt.NDArray[np.int64]:
        """Per active node (layout order) its place by score for group ``g`` (0 = best);
        equal scores fall to the layout order (operator, zone, id)."""
        scores = self._scores(g)
        order = np.argsort(scores)
        ordered = scores[order]
        if bool(np.any(ordered[1:] == ordered[:-1])):
            order = np.argsort(scores, kind="stable")
        return _places(order)

    def _compute(self, g: int) -> GroupRanking:
        count = len(self._layout)
        if count == 0:
            return GroupRanking((), (), (), 0, self.draining)
        rank = self._score_ranks(g)
        inside = rank  # the order inside an operator: by score, or by (zone level, score)
        if self._zones is not None:
            zone_index, zone_start = self._zones
            order = np.argsort(zone_index * count + rank)
            zone_level = np.empty(count, dtype=np.int64)
            zone_level[order] = np.arange(count) - zone_start[order]
            inside = _places(np.argsort(zone_level * count + rank))
        ops_index, ops_start = self._ops
        order = np.argsort(ops_index * count + inside)
        level = np.empty(count, dtype=np.int64)
        level[order] = np.arange(count) - ops_start[order]
        key = level * count + rank  # level order: (level, score); every key differs
        top = np.argpartition(key, self.prefix - 1)[:self.prefix] if self.prefix < count \
            else np.arange(count)
        final = top[np.argsort(key[top])]
        prefix = tuple(self._layout[i] for i in final.tolist())
        start = g % len(self.active)
        skipped = sorted((p - start) % len(self.active) for p in self._id_pos[final].tolist())
        return GroupRanking(prefix, tuple(skipped), self.active, start, self.draining)


def _places(order: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
    """The inverse permutation of ``order``: per item its place."""
    places = np.empty(len(order), dtype=np.int64)
    places[order] = np.arange(len(order))
    return places


def _runs(keys: Sequence[object]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For keys in runs (equal keys adjacent): per item its run number and the
    index where its run starts."""
    index = np.empty(len(keys), dtype=np.int64)
    start = np.empty(len(keys), dtype=np.int64)
    run, begun = -1, 0
    for i, key in enumerate(keys):
        if i == 0 or key != keys[i - 1]:
            run, begun = run + 1, i
        index[i], start[i] = run, begun
    return index, start

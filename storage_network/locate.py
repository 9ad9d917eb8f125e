"""Where a stripe's shards are: follow the rendezvous ranking past the first n nodes.

Shard i of a chunk is written to the i-th node of the chunk's ranking (its
*home*).  When a home is lost, repair stores the rebuilt shard on the next
nodes of the same ranking (*spares*, see :mod:`storage_network.repair`);
when nodes join or leave, ranks shift by a few places.  Signed records never
change, so readers find shards by asking, not by a table:

1. every node among the first ``n + m`` of the ranking is asked (one
   ``POST /shards/has`` per node for all chunks at once) for all ``n``
   shard ids of the chunk;
2. for chunks that still lack ``want`` shards, every other node of the
   network is asked for the missing ids.

The answer maps each chunk's shard indices to the nodes that claim them,
in ranking order, plus the nodes that did not answer.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import NodeError
from .manifest import ChunkRef
from .network_client import NetworkClient
from .network_file import NodeInfo
from .placement import ranking
from .stripe import shard_id


@dataclass
class Locations:
    """Shard holders per chunk.

    Attributes:
        holders: per chunk (in the order asked), shard index -> nodes that
            claim it, in ranking order.
        rankings: per chunk, the chunk's full rendezvous ranking.
        unreachable: node id -> why it did not answer.
    """

    holders: list[dict[int, list[NodeInfo]]]
    rankings: list[list[NodeInfo]]
    unreachable: dict[str, str] = field(default_factory=dict)

    def holding(self, chunk: int) -> set[str]:
        """Ids of the nodes holding any shard of chunk number ``chunk``."""
        return {node.id for nodes in self.holders[chunk].values() for node in nodes}


async def _ask_all(net: NetworkClient, wanted: dict[str, set[str]],
                   unreachable: dict[str, str]) -> dict[str, set[str]]:
    async def ask(node_id: str) -> set[str]:
        try:
            return await net.nodes[node_id].has(sorted(wanted[node_id]))
        except NodeError as exc:
            unreachable[node_id] = str(exc)
            return set()

    ids = [nid for nid in wanted if nid not in unreachable]
    answers = await asyncio.gather(*(ask(nid) for nid in ids))
    return dict(zip(ids, answers, strict=True))


async def locate_shards(net: NetworkClient, refs: Sequence[ChunkRef], k: int, m: int,
                        want: int | None = None) -> Locations:
    """Find the holders of every shard of every chunk in ``refs``.

    Args:
        k, m: the stripe shape (from the manifest).
        want: shards a chunk needs before the search stops early; a reader
            passes ``k``, repair ``k + m`` (the default).

    Never raises for node failures: unreachable nodes are reported in
    :attr:`Locations.unreachable` and simply hold nothing.
    """
    n = k + m
    want = n if want is None else want
    nodes = net.network.nodes
    rankings = [ranking(nodes, ref.chunk_id) for ref in refs]
    holders: list[dict[int, list[NodeInfo]]] = [defaultdict(list) for _ in refs]
    unreachable: dict[str, str] = {}

    def collect(asked: list[list[tuple[NodeInfo, list[int]]]]) -> dict[str, set[str]]:
        wanted: dict[str, set[str]] = defaultdict(set)
        for ref, pairs in zip(refs, asked, strict=True):
            for node, indices in pairs:
                wanted[node.id].update(shard_id(ref.root, i) for i in indices)
        return wanted

    first = [[(node, list(range(n))) for node in rank[:n + m]] for rank in rankings]
    held = await _ask_all(net, collect(first), unreachable)
    _record(refs, first, held, holders)

    second: list[list[tuple[NodeInfo, list[int]]]] = []
    for rank, have in zip(rankings, holders, strict=True):
        missing = [i for i in range(n) if i not in have]
        second.append([(node, missing) for node in rank[n + m:]]
                      if len(have) < want and missing else [])
    if any(second):
        held = await _ask_all(net, collect(second), unreachable)
        _record(refs, second, held, holders)
    ordered = [{i: sorted(nodes_, key=rank.index) for i, nodes_ in sorted(have.items())}
               for have, rank in zip(holders, rankings, strict=True)]
    return Locations(ordered, rankings, unreachable)


def _record(refs: Sequence[ChunkRef], asked: list[list[tuple[NodeInfo, list[int]]]],
            held: dict[str, set[str]], holders: list[dict[int, list[NodeInfo]]]) -> None:
    for ref, pairs, have in zip(refs, asked, holders, strict=True):
        for node, indices in pairs:
            present = held.get(node.id, set())
            for i in indices:
                if shard_id(ref.root, i) in present and node not in have[i]:
                    have[i].append(node)

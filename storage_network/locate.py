"""Where a stripe's shards are: follow the rendezvous ranking past the first n nodes.

Shard i of a chunk is written to the i-th node of the chunk's ranking (its
*home*).  When a home is lost, repair stores the rebuilt shard on the next
nodes of the same ranking (*spares*, see :mod:`storage_network.repair`);
when nodes join or leave, ranks shift by a few places.  Signed records never
change, so readers find shards by asking, not by a table:

1. every home is asked (one ``POST /shards/has`` per node for all chunks
   at once) for its own shard id: in a network whose members have not
   changed since the push, this finds every shard with one id per shard;
2. for chunks that still lack ``want`` shards, every node of the ranking
   is asked for the missing ids it was not asked for yet (spares, shifted
   ranks).

The answer maps each chunk's shard indices to the nodes that claim them,
in ranking order, plus the nodes that did not answer.

By default every answer is awaited (repair wants to know everything).  A
reader passes ``settle`` (seconds): once that long has passed and every
chunk has ``want`` claimed shards among the answers so far, the requests
still running are abandoned and their nodes reported as slow.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import NodeError
from .manifest import ChunkRef
from .network_client import NetworkClient, cancel_and_wait
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
        slow: node id -> why its answer was abandoned (only with ``settle``);
            such a node may hold shards it is not listed for.
    """

    holders: list[dict[int, list[NodeInfo]]]
    rankings: list[list[NodeInfo]]
    unreachable: dict[str, str] = field(default_factory=dict)
    slow: dict[str, str] = field(default_factory=dict)

    def holding(self, chunk: int) -> set[str]:
        """Ids of the nodes holding any shard of chunk number ``chunk``."""
        return {node.id for nodes in self.holders[chunk].values() for node in nodes}


Asked = list[list[tuple[NodeInfo, list[int]]]]


async def _ask_all(net: NetworkClient, wanted: dict[str, set[str]],
                   unreachable: dict[str, str], slow: dict[str, str], settle: float | None,
                   enough: Callable[[dict[str, set[str]]], bool]) -> dict[str, set[str]]:
    """Ask each node of ``wanted`` (skipping known unreachable and slow ones).

    Returns the answers by node id; a node that failed is added to
    ``unreachable`` and answers nothing.  With ``settle`` (seconds), once
    that long has passed and ``enough(answers so far)`` holds, the requests
    still running are cancelled and their nodes added to ``slow``.
    """
    async def ask(node_id: str) -> set[str]:
        try:
            return await net.nodes[node_id].has(sorted(wanted[node_id]))
        except NodeError as exc:
            unreachable[node_id] = str(exc)
            return set()

    ids = [nid for nid in wanted if nid not in unreachable and nid not in slow]
    if settle is None:
        answers = await asyncio.gather(*(ask(nid) for nid in ids))
        return dict(zip(ids, answers, strict=True))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    tasks = {asyncio.create_task(ask(nid)): nid for nid in ids}
    pending = set(tasks)
    held: dict[str, set[str]] = {}
    try:
        while pending:
            left = deadline - loop.time()
            done, pending = await asyncio.wait(
                pending, timeout=left if left > 0 else None,
                return_when=asyncio.ALL_COMPLETED if left > 0 else asyncio.FIRST_COMPLETED)
            held.update((tasks[task], task.result()) for task in done)
            if pending and loop.time() >= deadline and enough(held):
                break
    finally:
        await cancel_and_wait(pending)
    for task in pending:
        slow[tasks[task]] = f"no has answer within {settle:g} s (abandoned)"
    return held


async def locate_shards(net: NetworkClient, refs: Sequence[ChunkRef], k: int, m: int,
                        want: int | None = None, *, settle: float | None = None) -> Locations:
    """Find the holders of every shard of every chunk in ``refs``.

    Args:
        k, m: the stripe shape (from the manifest).
        want: shards a chunk needs before the search stops early; a reader
            passes ``k``, repair ``k + m`` (the default).
        settle: seconds after which, once every chunk has ``want`` claimed
            shards among the answers, slower ``has`` requests are abandoned
            (their nodes go to :attr:`Locations.slow`).  None (the default)
            waits for every answer.

    Never raises for node failures: unreachable nodes are reported in
    :attr:`Locations.unreachable` and simply hold nothing.
    """
    n = k + m
    want = n if want is None else want
    nodes = net.network.nodes
    rankings = [ranking(nodes, ref.chunk_id) for ref in refs]
    holders: list[dict[int, list[NodeInfo]]] = [defaultdict(list) for _ in refs]
    unreachable: dict[str, str] = {}
    slow: dict[str, str] = {}

    def enough(asked: Asked) -> Callable[[dict[str, set[str]]], bool]:
        return lambda held: _found(refs, asked, held, holders, want)

    def collect(asked: Asked) -> dict[str, set[str]]:
        wanted: dict[str, set[str]] = defaultdict(set)
        for ref, pairs in zip(refs, asked, strict=True):
            for node, indices in pairs:
                wanted[node.id].update(shard_id(ref.root, i) for i in indices)
        return wanted

    first: Asked = [[(node, [i]) for i, node in enumerate(rank[:n])] for rank in rankings]
    held = await _ask_all(net, collect(first), unreachable, slow, settle, enough(first))
    _record(refs, first, held, holders)

    second: Asked = []
    for rank, have in zip(rankings, holders, strict=True):
        missing = [i for i in range(n) if i not in have]
        if len(have) < want and missing:
            pairs = [(node, [i for i in missing if i != pos]) for pos, node in enumerate(rank)]
            second.append([(node, indices) for node, indices in pairs if indices])
        else:
            second.append([])
    if any(second):
        held = await _ask_all(net, collect(second), unreachable, slow, settle, enough(second))
        _record(refs, second, held, holders)
    ordered = [{i: sorted(nodes_, key=rank.index) for i, nodes_ in sorted(have.items())}
               for have, rank in zip(holders, rankings, strict=True)]
    return Locations(ordered, rankings, unreachable, slow)


def _found(refs: Sequence[ChunkRef], asked: Asked, held: dict[str, set[str]],
           holders: list[dict[int, list[NodeInfo]]], want: int) -> bool:
    """True if every chunk has ``want`` shard indices known held (recorded, or in ``held``)."""
    for ref, pairs, have in zip(refs, asked, holders, strict=True):
        found = set(have)
        for node, indices in pairs:
            if len(found) >= want:
                break
            present = held.get(node.id)
            if present:
                found.update(i for i in indices
                             if i not in found and shard_id(ref.root, i) in present)
        if len(found) < want:
            return False
    return True


def _record(refs: Sequence[ChunkRef], asked: Asked,
            held: dict[str, set[str]], holders: list[dict[int, list[NodeInfo]]]) -> None:
    for ref, pairs, have in zip(refs, asked, holders, strict=True):
        for node, indices in pairs:
            present = held.get(node.id, set())
            for i in indices:
                if shard_id(ref.root, i) in present and node not in have[i]:
                    have[i].append(node)

"""Reading shards back from the nodes that claim them and verifying each one.

Repair uses this to find the shards a node holds but serves wrong (rot,
tampering, a lying ``has``) and to get verified fragments to rebuild from.
Per node, the shards asked go in batch requests of at most
:data:`READ_BATCH` ids (:meth:`NodeClient.get_shards`, every body capped by
its stripe's largest shard, :func:`storage_network.wire.stripe.max_shard_bytes`),
and every body is checked against its stripe root off the event loop.
Each asked ``(node, shard)`` ends in one of three places:

- :attr:`Checked.fragments`: the body verified; its fragment, by ``(stripe
  root, index)`` (the first good one of an index is kept);
- :attr:`Checked.bad`: the node served bytes that do not verify
  (``"corrupt"``), or claimed the shard and then did not serve it
  (``"missing"``): the shard counts as missing on that node;
- :attr:`Checked.unread`: the request failed (node down, timeout, malformed
  or oversized answer): nothing is known; the node is reported to
  ``net.health`` and named in :attr:`Checked.node_errors`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from storage_network.client import NetworkClient
from storage_network.errors import NodeError, ShardProofError
from storage_network.wire.manifest import ChunkRef
from storage_network.wire.stripe import max_shard_bytes, shard_id, verify_shard

READ_BATCH = 64
"""Shards asked of one node in one request (bounds the answer: 64 shards)."""


@dataclass
class Checked:
    """What reading back a set of shards found (see the module docstring).

    Attributes:
        fragments: (stripe root, index) -> verified fragment (pyeclib's, proof stripped).
        bad: (node id, shard id) -> ``"corrupt"`` or ``"missing"``.
        unread: (node id, shard id) pairs whose request failed.
        node_errors: node id -> the error of its failed request.
        verified: shards read that verified.
    """

    fragments: dict[tuple[bytes, int], bytes] = field(default_factory=dict)
    bad: dict[tuple[str, str], str] = field(default_factory=dict)
    unread: set[tuple[str, str]] = field(default_factory=set)
    node_errors: dict[str, str] = field(default_factory=dict)
    verified: int = 0


def _verify(items: Sequence[tuple[bytes, int, memoryview | None]]
            ) -> list[bytes | str]:
    """Per ``(root, index, body)``: the fragment, or ``"missing"`` / ``"corrupt"`` (blocking)."""
    out: list[bytes | str] = []
    for root, index, body in items:
        if body is None:
            out.append("missing")
            continue
        try:
            out.append(bytes(verify_shard(root, index, body)))
        except ShardProofError:
            out.append("corrupt")
    return out


async def read_and_verify(net: NetworkClient, wanted: dict[str, list[tuple[ChunkRef, int]]],
                          k: int, checked: Checked | None = None) -> Checked:
    """Read ``wanted`` (node id -> (chunk, shard index) pairs the node claims), verify each.

    Args:
        k: the stripes' data shard count (caps each body).
        checked: results to add to (a new :class:`Checked` when None).

    Never raises for a node: see the module docstring.
    """
    out = checked or Checked()
    loop = asyncio.get_running_loop()

    async def one(node_id: str, pairs: list[tuple[ChunkRef, int]]) -> None:
        for start in range(0, len(pairs), READ_BATCH):
            part = pairs[start:start + READ_BATCH]
            ids = [shard_id(ref.root, index) for ref, index in part]
            limits = [max_shard_bytes(ref.stored_size, k) for ref, _ in part]
            try:
                bodies = await net.nodes[node_id].get_shards(ids, limits)
            except NodeError as exc:
                net.health.node_error(node_id, exc)
                out.node_errors.setdefault(node_id, str(exc))
                out.unread.update((node_id, sid) for sid in ids)
                continue
            results = await loop.run_in_executor(
                net.pool, _verify, [(ref.root, index, body)
                                    for (ref, index), body in zip(part, bodies, strict=True)])
            for (ref, index), sid, result in zip(part, ids, results, strict=True):
                if isinstance(result, str):
                    out.bad[(node_id, sid)] = result
                    net.health.bad(node_id, f"{result} shard {sid[:20]} (read back by repair)")
                else:
                    out.verified += 1
                    out.fragments.setdefault((ref.root, index), result)

    by_node: dict[str, list[tuple[ChunkRef, int]]] = defaultdict(list)
    for node_id, pairs in wanted.items():
        by_node[node_id].extend(pairs)
    await asyncio.gather(*(one(node_id, pairs) for node_id, pairs in by_node.items() if pairs))
    return out

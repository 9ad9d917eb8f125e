"""One verified shard request of a chunk fetch, and what its answer does to the node.

A chunk fetch (:mod:`storage_network.read.chunk_fetch`) asks for shards one
:class:`Candidate` at a time (or a few at once, in a batch:
:mod:`storage_network.read.batch_fetch`).  Every body is checked against the
stripe root.  A body that fails its proof, a 404 for a claimed shard, a
malformed answer, a connection error or a timeout counts against the node
(``NodeHealth.node_error``: a timeout blamed on the client does not, and the
request's outcome is then :data:`Again.AGAIN`).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from storage_network import metrics
from storage_network.client import NetworkClient
from storage_network.config import NodeInfo
from storage_network.errors import NodeError, ShardProofError
from storage_network.nodes.health import blamed_on_client
from storage_network.wire.manifest import ChunkRef
from storage_network.wire.stripe import max_shard_bytes, shard_id, verify_shard

log = logging.getLogger("nixshard.network")


class Again(enum.Enum):
    """The outcome of a shard request that timed out because the client itself
    stalled: the node was not at fault and may be asked again."""

    AGAIN = "again"


Fragment = bytes | memoryview
"""A verified fragment: bytes, or a view into the answer it came in (not copied)."""

Outcome = Fragment | None | Again
"""A shard request's outcome: the verified fragment, None (failed, reported), or AGAIN."""

@dataclass(frozen=True)
class Candidate:
    """One shard request a chunk fetch may make: shard ``index`` from ``node``,
    the ``pos``-th of that shard's holders in ranking order."""

    index: int
    node: NodeInfo
    pos: int


def preference(net: NetworkClient, k: int, cand: Candidate
                ) -> tuple[int, int, bool, int, int]:
    """Sort key of a candidate, lower first: the node's standing and audit score
    bucket now (``net.health.rank``), data before parity, shard index, ranking order."""
    standing, bucket = net.health.rank(cand.node.id)
    return standing, bucket, cand.index >= k, cand.index, cand.pos


def verify_all(items: Sequence[tuple[bytes, int, bytes | memoryview]]
                ) -> list[memoryview | ShardProofError]:
    """The fragment of each ``(root, index, body)`` (a view into ``body``, not a
    copy), or why its proof failed (blocking)."""
    checked: list[memoryview | ShardProofError] = []
    for root, index, body in items:
        try:
            checked.append(verify_shard(root, index, body))
        except ShardProofError as exc:
            checked.append(exc)
    return checked


def request_failed(net: NetworkClient, node: NodeInfo, exc: NodeError, what: str,
                    problems: list[str]) -> None:
    """Report a shard request (single or batch) that got no answer."""
    metrics.shard_error(node.id, "error")
    log.warning("%s: %s", what, exc)
    net.health.node_error(node.id, exc)
    problems.append(str(exc))


def accept_shard(net: NetworkClient, ref: ChunkRef, cand: Candidate,
                 body: bytes | memoryview | None,
                 checked: Fragment | ShardProofError | None, problems: list[str]
                 ) -> Fragment | None:
    """The verified fragment of one answered shard, or None with the node reported.

    A missing claimed shard or bad data benches the node (``net.health``);
    the failure is logged and a line is added to ``problems``.
    """
    node, sid = cand.node, shard_id(ref.root, cand.index)
    if body is None:
        metrics.shard_error(node.id, "missing")
        log.warning("node %s claimed shard %s but does not serve it", node.id, sid[:20])
        net.health.bad(node.id, f"claimed shard {sid[:20]} but did not serve it")
        problems.append(f"node {node.id} claimed shard {cand.index} but does not serve it")
        return None
    if isinstance(checked, ShardProofError) or checked is None:
        metrics.shard_error(node.id, "bad")
        log.warning("node %s served bad data for shard %s: %s", node.id, sid[:20], checked)
        net.health.bad(node.id, f"served bad data for shard {sid[:20]}: {checked}")
        problems.append(f"node {node.id} served bad data for shard {cand.index}")
        return None
    net.health.served(node.id, len(body))
    return checked


async def fetch_shard(net: NetworkClient, ref: ChunkRef, k: int, cand: Candidate,
                      problems: list[str]) -> Outcome:
    """The verified fragment of one shard, None, or AGAIN (a timeout blamed on the client).

    On failure the node is reported to ``net.health`` (bad data and a
    missing claimed shard bench it; an error or timeout demotes it, unless
    blamed on the client), the failure is logged and a line is added to ``problems``.
    """
    node, sid = cand.node, shard_id(ref.root, cand.index)
    started = time.perf_counter()
    try:
        body = await net.nodes[node.id].get_shard(sid, max_shard_bytes(ref.stored_size, k))
    except NodeError as exc:
        metrics.observe_shard(node.id, time.perf_counter() - started, 0)
        request_failed(net, node, exc, f"shard {sid[:20]}", problems)
        return Again.AGAIN if blamed_on_client(exc) else None
    metrics.observe_shard(node.id, time.perf_counter() - started, len(body or b""))
    checked = None
    if body is not None:
        (checked,) = await net.compute(len(body), verify_all, [(ref.root, cand.index, body)])
    return accept_shard(net, ref, cand, body, checked, problems)

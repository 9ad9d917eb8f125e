"""Writing one version of a record key to its replica window (docs/consistency.md, "Records").

The *window* of a key is the first ``R + m`` nodes of its rendezvous
ranking (all nodes when there are fewer), R = the network file's
``record_replicas``.  :func:`write_version` writes one signed version (a
record or a tombstone, the exact bytes) there:

1. to the *arbiter*: the first node of the window, in ranking order, that
   answers.  A node that fails (no connection, timeout, 5xx, a malformed
   answer) is passed over for the next one; a slow one is waited for up to
   the client's deadlines, not hedged: two publishers racing for a key must
   meet at the same node.  When the arbiter refuses (409),
   the version it holds is read back and judged (:func:`judge_refusal`):
   the same content in a newer version counts as stored; another content
   (:attr:`WriteOutcome.conflict`) or a newer version that supersedes this
   one (:attr:`WriteOutcome.superseded`) stops the write: nothing else is
   written.  A 409 the node cannot back with a valid, newer or conflicting
   version is a lie: the node is passed over like a failed one.
2. then to the next nodes of the window in ranking order, until R nodes
   hold it.  A node that fails or refuses is passed over; a node slower than
   the client's ``hedge_after`` while fewer than R hold the version gets one
   more node of the window asked beside it (the slow request still counts
   if it ends well before the others).

With at most m nodes failing, R nodes of the window always take it; the
caller decides what fewer than R means (:attr:`WriteOutcome.stored`).
Every node failure is caught here, reported to ``net.health`` and kept in
:attr:`WriteOutcome.failures`; nothing raises for a node.

A node's quota refusal (402: the publisher is over its quota there) is no
node failure (its standing is untouched) and is kept in
:attr:`WriteOutcome.quota`: at the arbiter it stops the write, nothing
written anywhere; past the arbiter the next node of the window is asked.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from storage_network.client import NetworkClient, cancel_and_wait
from storage_network.config import NodeInfo
from storage_network.errors import NodeError, NodeStatusError, QuotaExceededError, RecordError
from storage_network.nodes.placement import record_window
from storage_network.wire.record import Record, open_record
from storage_network.wire.write_auth import Publisher

log = logging.getLogger("nixshard.network")


class Refusal(enum.Enum):
    """What a node's 409 to a version means, judged from the version it holds."""

    STORED = "stored"          # it holds this content in the same or a newer version
    CONFLICT = "conflict"      # it holds a record of another content
    SUPERSEDED = "superseded"  # it holds a newer version that this one cannot replace
    BOGUS = "bogus"            # what it holds does not justify a refusal


def judge_refusal(held: Record, incoming: Record) -> Refusal:
    """Why a node holding ``held`` may refuse ``incoming`` (rules of
    :func:`storage_network.wire.record.replacement`), from the writer's side."""
    if held.digest == incoming.digest:
        return Refusal.STORED
    both_records = not held.tombstone and not incoming.tombstone
    if both_records and held.content_id != incoming.content_id:
        return Refusal.CONFLICT
    if held.version > incoming.version:
        return Refusal.STORED if both_records else Refusal.SUPERSEDED
    return Refusal.BOGUS


@dataclass
class WriteOutcome:
    """What :func:`write_version` did.

    Attributes:
        stored: ids of the nodes that hold the version (or the same content in
            a newer version), arbiter first.
        conflict: the record of another content the arbiter holds (then
            nothing was written anywhere).
        superseded: the newer version the arbiter holds that this one cannot
            replace (a newer tombstone, or a newer record when deleting).
        failures: node id -> why it did not take the version.
        quota: the first quota refusal met (when the arbiter's: nothing was
            written anywhere).
    """

    stored: list[str] = field(default_factory=list)
    conflict: Record | None = None
    superseded: Record | None = None
    quota: QuotaExceededError | None = None
    failures: dict[str, str] = field(default_factory=dict)

    def failure_text(self) -> str:
        """The failures as one line: ``node-3: ...; node-5: ...`` (``none`` when empty)."""
        return "; ".join(f"{why}" for _, why in sorted(self.failures.items())) or "none"


def _refused(node: NodeInfo, verdict: Refusal) -> str:
    what = ("a record of another content" if verdict is Refusal.CONFLICT
            else "a newer version this one cannot replace")
    return f"node {node.id}: refused it, holding {what}"


async def _held_version(net: NetworkClient, node: NodeInfo, key: str) -> Record | str:
    """The valid version ``node`` holds under ``key`` after refusing a write of it, or
    why there is none to read (a node that refused holding nothing valid is benched)."""
    try:
        data = await net.nodes[node.id].get_record(key, peek=True)
    except NodeError as exc:
        net.health.node_error(node.id, exc)
        return str(exc)
    if data is None:
        why = "refused the version but holds none"
    else:
        try:
            return await asyncio.to_thread(open_record, net.network.publishers, key, data)
        except RecordError as exc:
            why = f"refused the version, holding an invalid one: {exc}"
    net.health.bad(node.id, f"record {key}: {why}")
    return f"node {node.id}: {why}"


async def _put(net: NetworkClient, node: NodeInfo, key: str, data: bytes,
               incoming: Record, publisher: Publisher
               ) -> Record | QuotaExceededError | str | None:
    """Write to one node: None when it holds the version (or the same content,
    newer) afterwards, the held version behind a justified refusal, the
    node's quota refusal, or why the node failed (a string)."""
    try:
        await net.nodes[node.id].put_record(key, data, publisher)
        return None
    except NodeStatusError as exc:
        quota = QuotaExceededError.from_node_error(exc)
        if quota is not None:
            return quota
        if exc.status != 409:
            net.health.node_error(node.id, exc)
            return str(exc)
        refused = str(exc)
    except NodeError as exc:
        net.health.node_error(node.id, exc)
        return str(exc)
    held = await _held_version(net, node, key)
    if isinstance(held, str):
        return f"{refused} ({held})"
    verdict = judge_refusal(held, incoming)
    if verdict is Refusal.STORED:
        return None
    if verdict is Refusal.BOGUS:
        net.health.bad(node.id, f"refused record {key} holding an older version of it")
        return f"{refused} (but it holds an older version: a false refusal)"
    return held


async def write_version(net: NetworkClient, publisher: Publisher, key: str, data: bytes,
                        incoming: Record, *, replicas: int | None = None,
                        window: Sequence[NodeInfo] | None = None) -> WriteOutcome:
    """Write the signed version ``data`` (opened: ``incoming``) of ``key`` to its window.

    Args:
        replicas: nodes that must hold it (default: ``record_replicas``).
        window: the nodes to use, in order (default: :func:`record_window`).

    Returns:
        The outcome (see the module docstring); never raises for a node.
    """
    want = net.network.record_replicas if replicas is None else replicas
    nodes = list(record_window(net.network, key) if window is None else window)
    outcome = WriteOutcome()
    queue = list(nodes)
    while queue and not outcome.stored:  # the arbiter: the first node that answers
        node = queue.pop(0)
        result = await _put(net, node, key, data, incoming, publisher)
        if result is None:
            outcome.stored.append(node.id)
        elif isinstance(result, QuotaExceededError):
            outcome.quota = result
            outcome.failures[node.id] = str(result)
            return outcome
        elif isinstance(result, Record):
            verdict = judge_refusal(result, incoming)
            if verdict is Refusal.CONFLICT:
                outcome.conflict = result
            else:
                outcome.superseded = result
            outcome.failures[node.id] = _refused(node, verdict)
            return outcome
        else:
            outcome.failures[node.id] = result
    await _write_rest(net, publisher, key, data, incoming, queue, want, outcome)
    if len(outcome.stored) < want:
        log.warning("record %s: on %d of %d nodes (%s)", key, len(outcome.stored), want,
                    outcome.failure_text())
    return outcome


async def _write_rest(net: NetworkClient, publisher: Publisher, key: str, data: bytes,
                      incoming: Record, queue: list[NodeInfo], want: int,
                      outcome: WriteOutcome) -> None:
    """After the arbiter: the next nodes of ``queue`` until ``want`` hold the version."""
    loop = asyncio.get_running_loop()
    running: dict[asyncio.Task[Record | QuotaExceededError | str | None],
                  tuple[NodeInfo, float]] = {}

    def launch(count: int) -> None:
        for _ in range(count):
            if not queue:
                return
            node = queue.pop(0)
            running[asyncio.create_task(
                _put(net, node, key, data, incoming, publisher))] = (node, loop.time())

    if not outcome.stored:
        return
    launch(want - len(outcome.stored))
    try:
        while running and len(outcome.stored) < want:
            done, _ = await asyncio.wait(set(running), timeout=net.hedge_after,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:  # every running write is slow: ask one more node beside them
                launch(1)
                continue
            for task in done:
                node, _ = running.pop(task)
                result = task.result()
                if result is None:
                    outcome.stored.append(node.id)
                    continue
                if isinstance(result, QuotaExceededError):
                    outcome.quota = outcome.quota or result
                    outcome.failures[node.id] = str(result)
                else:
                    outcome.failures[node.id] = (
                        _refused(node, judge_refusal(result, incoming))
                        if isinstance(result, Record) else result)
                launch(1)
            launch(want - len(outcome.stored) - len(running))
    finally:
        now = loop.time()
        for task, (node, started) in running.items():
            if not task.done() and now - started >= net.hedge_after:
                net.health.slow(node.id, f"record {key}: write hedged past")
        await cancel_and_wait(set(running))

"""Record lookup: the verified record of a key, found down its rendezvous ranking.

:func:`fetch_record` asks the first ``record_replicas`` nodes of the
record's ranking (where every publish writes it) and verifies the
signature; for each node that does not answer it asks the next node of the
ranking (repair copies records past dead nodes the same way).  Once a
valid record is in, slower nodes get ``hedge_after`` seconds more, then are
no longer waited for.  When no valid record is found, it is absent
(:class:`NotFoundError`) if one of the first ``record_replicas`` nodes
answered without it (none, or one failing its signature check, which is
logged); if none of them answered, :class:`RecordUnavailableError`.  With
``record_replicas >= m + 1`` a miss stays a 404 while up to m nodes are down.
"""

from __future__ import annotations

import asyncio
import logging

from .auth import PublisherKey
from .errors import NodeError, NotFoundError, RecordError, RecordUnavailableError
from .network_client import NetworkClient, cancel_and_wait
from .network_file import NodeInfo
from .placement import record_nodes
from .record import Record, open_record

log = logging.getLogger("nixshard.network")


async def _ask_record(net: NetworkClient, node: NodeInfo, key: str,
                      trusted: dict[str, PublisherKey]) -> Record | None | Exception:
    """The node's valid record, None if it has none (or an invalid one), or its NodeError."""
    try:
        data = await net.nodes[node.id].get_record(key)
    except NodeError as exc:
        log.info("record %s: %s", key, exc)
        net.health.node_error(node.id, exc)
        return exc
    if data is None:
        return None
    try:
        return open_record(trusted, key, data)
    except RecordError as exc:
        # A record we cannot trust is no record: it counts as "absent here".
        # Not held against the node: the key may just be one we do not trust.
        log.warning("node %s served a bad record for %s: %s", node.id, key, exc)
        return None


async def _ask_round(net: NetworkClient, nodes: list[NodeInfo], key: str,
                     trusted: dict[str, PublisherKey]) -> dict[str, Record | None | Exception]:
    """Ask ``nodes`` at once; after the first valid record, the rest get ``hedge_after`` s."""
    loop = asyncio.get_running_loop()
    tasks = {asyncio.create_task(_ask_record(net, node, key, trusted)): node for node in nodes}
    answers: dict[str, Record | None | Exception] = {}
    pending = set(tasks)
    grace_end: float | None = None
    try:
        while pending:
            timeout = None if grace_end is None else max(0.0, grace_end - loop.time())
            done, pending = await asyncio.wait(pending, timeout=timeout,
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break
            answers.update((tasks[task].id, task.result()) for task in done)
            if grace_end is None and any(isinstance(a, Record) for a in answers.values()):
                grace_end = loop.time() + net.hedge_after
    finally:
        await cancel_and_wait(pending)
    for task in pending:
        net.health.slow(tasks[task].id, f"record {key}: hedged past")
    return answers


async def fetch_record(net: NetworkClient, key: str,
                       trusted: dict[str, PublisherKey] | None = None) -> Record:
    """The verified record under ``key``.

    Asks the first ``record_replicas`` nodes of the record's ranking; for
    each that does not answer it asks the next node of the ranking, until
    ``record_replicas`` nodes have answered or the ranking is exhausted
    (repair copies records past dead nodes the same way).

    Args:
        trusted: publisher keys whose records are accepted (default: the
            network file's publishers).

    Once a valid record has arrived, the other nodes of that round get
    ``net.hedge_after`` seconds more; then the valid record first in ranking
    order wins and the requests still running are cancelled and recorded as slow.

    Raises:
        NotFoundError: no valid record, and at least one of the first
            ``record_replicas`` nodes (where every publish writes it) answered
            that it has none.
        RecordUnavailableError: no valid record, and none of the first
            ``record_replicas`` nodes answered: the record may exist on them,
            so this is not a 404.
    """
    keys = net.network.publishers if trusted is None else trusted
    ranked = record_nodes(net.network.nodes, key)
    wanted = net.network.record_replicas
    answers: dict[str, Record | None | Exception] = {}
    asked: list[NodeInfo] = []
    while True:
        answered = sum(not isinstance(a, Exception) for a in answers.values())
        batch = ranked[len(asked):len(asked) + wanted - answered]
        if not batch:
            break
        asked += batch
        answers.update(await _ask_round(net, batch, key, keys))
        for node in asked:
            answer = answers.get(node.id)
            if isinstance(answer, Record):
                return answer
    ordered = [answers.get(node.id) for node in asked]
    home_denials = sum(answers.get(node.id, False) is None for node in ranked[:wanted])
    if home_denials:
        denials = sum(answer is None for answer in ordered)
        raise NotFoundError(f"record {key}: absent on {denials} of the {len(asked)} nodes asked")
    home = [answers.get(node.id) for node in ranked[:wanted]]
    further = len(asked) - len(home)
    raise RecordUnavailableError(
        f"record {key}: none of its {len(home)} replica nodes answered"
        + (f" ({further} further nodes asked, none holds it)" if further else "") + "; "
        + "; ".join(str(a) for a in home))

"""Step 3 of garbage collection: delete the old shards no live stripe references.

Every node's shard listing is walked page by page
(:func:`storage_network.nodes.listing_pages.walk_shards`), :data:`NODES_AT_ONCE`
nodes at a time; a shard whose stripe is not live and whose mtime is before
the cut-off (``t0 - grace``) is deleted with ``DELETE /shards/<id>?before=<cut-off>``
as the walk reaches it: the node deletes it only if its mtime is still
earlier (see :mod:`storage_network.upkeep.gc` for why a push racing the sweep
loses nothing).  The sweep holds a page or two per node walked, whatever the
size of the network; what it reports (the deleted shards) is its output.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Container

from storage_network.client import NetworkClient
from storage_network.errors import NodeError, ShardProofError
from storage_network.nodes.listing_pages import walk_shards
from storage_network.upkeep.gc_report import GcReport, NodeSweep
from storage_network.wire.listing import ListedShard
from storage_network.wire.stripe import parse_shard_id
from storage_network.wire.write_auth import Publisher

log = logging.getLogger("nixshard.gc")


NODES_AT_ONCE = 4
"""Nodes swept at once."""
LIVE_CHECK_BATCH = 1000
"""Listed shards whose stripes are looked up in the live set at once, on a worker
thread (the live set may be a table on disk)."""


def _live_among(live: Container[bytes], roots: list[bytes]) -> set[bytes]:
    """The stripe roots of ``roots`` that are in ``live`` (blocking)."""
    return {root for root in roots if root in live}


async def sweep_node(net: NetworkClient, publisher: Publisher, report: GcReport,
                     live: Container[bytes], limit: asyncio.Semaphore, node_id: str) -> None:
    """Walk one node's shards; delete (or, dry run, note) the unreferenced old ones.

    Args:
        live: the stripe roots that stay (a set, or garbage collection's
            :class:`~storage_network.upkeep.record_table.RecordTable`); looked up
            :data:`LIVE_CHECK_BATCH` listed shards at a time on a worker thread, so
            it must be safe to read from several threads.
    """
    cutoff = report.cutoff
    sweep = report.nodes[node_id] = NodeSweep()
    deletes: set[asyncio.Task[None]] = set()

    async def delete(shard: ListedShard) -> None:
        try:
            deleted = await net.nodes[node_id].delete_shard(shard.id, cutoff, publisher)
        except NodeError as exc:
            sweep.errors.append(str(exc))
            return
        finally:
            limit.release()
        if deleted:
            sweep.note_deleted(shard)
        else:
            sweep.kept_recent += 1

    listed: list[tuple[ListedShard, bytes]] = []

    async def decide() -> None:
        """Delete (or note) the unreferenced old shards among those listed so far."""
        chunk = listed[:]
        listed.clear()
        held = await asyncio.to_thread(_live_among, live, [root for _, root in chunk])
        for shard, root in chunk:
            if root in held:
                continue
            if shard.mtime >= cutoff:
                sweep.kept_recent += 1
            elif report.dry_run:
                sweep.note_deleted(shard)
            else:
                await limit.acquire()  # deletes in flight stay bounded as the walk goes on
                task = asyncio.create_task(delete(shard))
                deletes.add(task)
                task.add_done_callback(deletes.discard)

    try:
        try:
            async for shard in walk_shards(net.nodes[node_id]):
                try:
                    root, _ = parse_shard_id(shard.id)
                except ShardProofError:
                    log.warning("node %s lists a malformed shard id %r", node_id,
                                shard.id[:80])
                    continue
                listed.append((shard, root))
                if len(listed) >= LIVE_CHECK_BATCH:
                    await decide()
        except NodeError as exc:
            sweep.errors.append(f"not swept: {exc}")
            report.skipped.append(f"node {node_id} could not list its shards: {exc}")
        await decide()
    finally:
        await asyncio.gather(*deletes)
    sweep.deleted.sort(key=lambda s: s.id)
    if sweep.deleted_count and not report.dry_run:
        log.info("node %s: deleted %d shards, %d bytes", node_id, sweep.deleted_count,
                 sweep.deleted_bytes)


async def sweep_shards(net: NetworkClient, publisher: Publisher, report: GcReport,
                       live: Container[bytes], limit: asyncio.Semaphore) -> None:
    """Sweep every node (:func:`sweep_node`), :data:`NODES_AT_ONCE` at a time; the
    report's nodes come in network order.

    Args:
        limit: bounds the deletes in flight over all nodes.
    """
    ids = [n.id for n in net.network.nodes]
    for node_id in ids:
        report.nodes[node_id] = NodeSweep()
    at_once = asyncio.Semaphore(NODES_AT_ONCE)

    async def one(node_id: str) -> None:
        async with at_once:
            await sweep_node(net, publisher, report, live, limit, node_id)

    await asyncio.gather(*(one(node_id) for node_id in ids))

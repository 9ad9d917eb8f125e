"""Step 3 of garbage collection: delete the old shards no live stripe references.

Every node lists its shards; a shard whose stripe is not live and whose
mtime is before the cut-off (``t0 - grace``) is deleted with
``DELETE /shards/<id>?before=<cut-off>``: the node deletes it only if its
mtime is still earlier (see :mod:`storage_network.upkeep.gc` for why a push
racing the sweep loses nothing).
"""

from __future__ import annotations

import asyncio
import logging

from storage_network.client import NetworkClient
from storage_network.errors import NodeError, ShardProofError
from storage_network.upkeep.gc_report import GcReport, NodeSweep
from storage_network.wire.listing import ListedShard
from storage_network.wire.stripe import parse_shard_id
from storage_network.wire.write_auth import Publisher

log = logging.getLogger("nixshard.gc")


async def sweep_shards(net: NetworkClient, publisher: Publisher, report: GcReport,
                       live: set[bytes], limit: asyncio.Semaphore) -> None:
    """List every node's shards; delete (or, dry run, note) the unreferenced old ones."""
    cutoff = report.cutoff

    async def listing(node_id: str) -> list[ListedShard] | str:
        try:
            return await net.nodes[node_id].list_shards()
        except NodeError as exc:
            return str(exc)

    async def delete(node_id: str, sweep: NodeSweep, shard: ListedShard) -> None:
        try:
            async with limit:
                deleted = await net.nodes[node_id].delete_shard(shard.id, cutoff, publisher)
        except NodeError as exc:
            sweep.errors.append(str(exc))
            return
        if deleted:
            sweep.deleted.append(shard)
        else:
            sweep.kept_recent += 1

    ids = [n.id for n in net.network.nodes]
    deletes = []
    for node_id, listed in zip(ids, await asyncio.gather(*(listing(i) for i in ids)),
                               strict=True):
        sweep = report.nodes[node_id] = NodeSweep()
        if isinstance(listed, str):
            sweep.errors.append(f"not swept: {listed}")
            report.skipped.append(f"node {node_id} could not list its shards: {listed}")
            continue
        for shard in listed:
            try:
                root, _ = parse_shard_id(shard.id)
            except ShardProofError:
                log.warning("node %s lists a malformed shard id %r", node_id, shard.id[:80])
                continue
            if root in live:
                continue
            if shard.mtime >= cutoff:
                sweep.kept_recent += 1
            elif report.dry_run:
                sweep.deleted.append(shard)
            else:
                deletes.append(delete(node_id, sweep, shard))
    await asyncio.gather(*deletes)
    for node_id, sweep in report.nodes.items():
        sweep.deleted.sort(key=lambda s: s.id)
        if sweep.deleted and not report.dry_run:
            log.info("node %s: deleted %d shards, %d bytes", node_id, len(sweep.deleted),
                     sweep.deleted_bytes)

"""What the network holds: every valid record and the stripes they reference.

Audit, repair, garbage collection and status all start here: every node
lists its records (``GET /records``); each key is read from the nodes that
list it until one copy opens under a trusted publisher key (bad copies are
logged and skipped).  The manifests then give every stripe the network
must keep, with the records that reference it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from .auth import PublisherKey
from .errors import NodeError, RecordError
from .manifest import ChunkRef
from .network_client import NetworkClient
from .node_client import ListedRecord
from .placement import record_nodes
from .record import Record, open_record

log = logging.getLogger("nixshard.network")
READS_IN_FLIGHT = 32


@dataclass(frozen=True)
class Stripe:
    """One chunk's stripe as the manifests describe it."""

    ref: ChunkRef
    codec: str
    k: int
    m: int

    @property
    def n(self) -> int:
        """Shards in the stripe."""
        return self.k + self.m


@dataclass(frozen=True)
class RecordCopy:
    """One node's copy of a record: its exact bytes and the record they open to."""

    data: bytes
    record: Record


@dataclass
class Inventory:
    """Records and stripes found in the network.

    Attributes:
        records: record key -> the verified record (the first valid copy in
            ranking order).
        listings: record key -> what each node listing it said (node id -> entry).
        stripes: stripe root -> stripe; ``users[root]`` are the record keys using it.
        bad_records: record key -> why no listed copy could be opened.
        unreachable: node id -> why it could not be listed.
        copies: with ``every_copy``: record key -> node id -> its valid copy.
        copy_problems: with ``every_copy``: why a listed copy of a record with
            another valid copy could not be read or opened.
    """

    records: dict[str, Record] = field(default_factory=dict)
    listings: dict[str, dict[str, ListedRecord]] = field(default_factory=dict)
    stripes: dict[bytes, Stripe] = field(default_factory=dict)
    users: dict[bytes, set[str]] = field(default_factory=lambda: defaultdict(set))
    bad_records: dict[str, str] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    copies: dict[str, dict[str, RecordCopy]] = field(default_factory=dict)
    copy_problems: list[str] = field(default_factory=list)

    def add(self, record: Record) -> None:
        """Add a verified record and its stripes."""
        self.records[record.key] = record
        man = record.manifest
        for ref in man.chunks:
            self.stripes.setdefault(ref.root, Stripe(ref, man.codec, man.k, man.m))
            self.users[ref.root].add(record.key)


async def _read_copy(net: NetworkClient, key: str, node_id: str,
                     trusted: dict[str, PublisherKey]) -> RecordCopy | str | None:
    """Node ``node_id``'s copy of ``key``; None when it no longer serves one; else why not."""
    try:
        data = await net.nodes[node_id].get_record(key, peek=True)
    except NodeError as exc:
        return f"node {node_id} could not be read: {exc}"
    if data is None:
        return None
    try:
        return RecordCopy(data, await asyncio.to_thread(open_record, trusted, key, data))
    except RecordError as exc:
        log.warning("node %s holds a bad record %s: %s", node_id, key, exc)
        return f"node {node_id} could not be opened: {exc}"


async def take_inventory(net: NetworkClient, trusted: dict[str, PublisherKey] | None = None,
                         *, every_copy: bool = False) -> Inventory:
    """List every node's records, read and verify each, collect the stripes.

    Args:
        every_copy: read every listed copy of every record (garbage
            collection needs each copy's bytes) instead of the first copy,
            in ranking order, that opens.

    Never raises for node failures: they land in :attr:`Inventory.unreachable`,
    :attr:`Inventory.bad_records` and :attr:`Inventory.copy_problems`.
    """
    keys = net.network.publishers if trusted is None else trusted
    inv = Inventory()

    async def listing(node_id: str) -> list[ListedRecord]:
        try:
            return await net.nodes[node_id].list_records()
        except NodeError as exc:
            inv.unreachable[node_id] = str(exc)
            return []

    ids = [n.id for n in net.network.nodes]
    for node_id, entries in zip(ids, await asyncio.gather(*(listing(i) for i in ids)),
                                strict=True):
        for entry in entries:
            inv.listings.setdefault(entry.key, {})[node_id] = entry
    limit = asyncio.Semaphore(READS_IN_FLIGHT)

    async def read(key: str, node_id: str) -> RecordCopy | str | None:
        async with limit:
            return await _read_copy(net, key, node_id, keys)

    async def one(key: str) -> None:
        order = [n.id for n in record_nodes(net.network.nodes, key)
                 if n.id in inv.listings[key]]
        if every_copy:
            results = list(await asyncio.gather(*(read(key, node_id) for node_id in order)))
        else:
            results = []
            for node_id in order:
                results.append(await read(key, node_id))
                if isinstance(results[-1], RecordCopy):
                    break
        found: dict[str, RecordCopy] = {}
        problems = []
        for node_id, result in zip(order, results, strict=False):
            if isinstance(result, RecordCopy):
                found[node_id] = result
            elif result is not None:
                problems.append(result)
            elif not every_copy:  # vanished since the listing: absent, unless all copies did
                problems.append(f"node {node_id} listed it but does not serve it")
        if found:
            inv.add(next(iter(found.values())).record)
            if every_copy:
                inv.copies[key] = found
                inv.copy_problems.extend(f"record {key} on {why}" for why in problems)
        elif problems:
            inv.bad_records[key] = "; ".join(problems)

    await asyncio.gather(*(one(key) for key in sorted(inv.listings)))
    return inv

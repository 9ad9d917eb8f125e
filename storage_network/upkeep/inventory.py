"""What the network holds: every valid record and the stripes they reference.

Audit, repair, garbage collection and status all start here: every node
lists its records (``GET /records``); every listed copy of each key is read
and verified under the trusted publisher keys (bad copies are logged and
skipped).  The newest valid version of a key decides what the key is
(docs/consistency.md): a record (the key is live) or a tombstone (the key
was deleted; its stripes are no longer needed).  The manifests of the live
records then give every stripe the network must keep, with the records that
reference it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from storage_network.client import NetworkClient
from storage_network.errors import NodeError, RecordError
from storage_network.nodes.placement import record_nodes
from storage_network.wire.listing import ListedRecord
from storage_network.wire.manifest import ChunkRef
from storage_network.wire.record import Record, newest, open_record
from storage_network.wire.write_auth import PublisherKey

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

    Every listed copy of every key is read and verified; the key's *newest*
    valid version (largest signed ``created``, ties by the envelope's
    SHA-256: :func:`storage_network.wire.record.newest`) decides what it is:

    Attributes:
        records: live keys: key -> its newest version, a record.
        tombstones: deleted keys: key -> its newest version, a tombstone.
        listings: record key -> what each node listing it said (node id -> entry).
        versions: record key -> node id -> :attr:`Record.digest` of the valid
            version that node serves (nodes serving none or an invalid one are absent).
        stripes: stripe root -> stripe of a live record; ``users[root]`` are
            the live record keys using it.
        bad_records: record key -> why no listed copy could be opened.
        unreachable: node id -> why it could not be listed.
        copies: with ``every_copy``: record key -> node id -> its valid copy
            (any version).
        copy_problems: why a listed copy of a key with another valid copy
            could not be read or opened.
    """

    records: dict[str, Record] = field(default_factory=dict)
    tombstones: dict[str, Record] = field(default_factory=dict)
    listings: dict[str, dict[str, ListedRecord]] = field(default_factory=dict)
    versions: dict[str, dict[str, bytes]] = field(default_factory=dict)
    stripes: dict[bytes, Stripe] = field(default_factory=dict)
    users: dict[bytes, set[str]] = field(default_factory=lambda: defaultdict(set))
    bad_records: dict[str, str] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    copies: dict[str, dict[str, RecordCopy]] = field(default_factory=dict)
    copy_problems: list[str] = field(default_factory=list)

    def add(self, record: Record) -> None:
        """Add a verified record (a live key's newest version) and its stripes."""
        self.records[record.key] = record
        man = record.manifest
        for ref in man.chunks:
            self.stripes.setdefault(ref.root, Stripe(ref, man.codec, man.k, man.m))
            self.users[ref.root].add(record.key)

    def newest(self, key: str) -> Record | None:
        """The newest valid version of ``key`` (record or tombstone), None if none."""
        return self.records.get(key) or self.tombstones.get(key)

    def holders_of_newest(self, key: str) -> list[str]:
        """Ids of the nodes serving the newest version of ``key``."""
        top = self.newest(key)
        if top is None:
            return []
        return [node_id for node_id, digest in self.versions.get(key, {}).items()
                if digest == top.digest]


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
    """List every node's records, read and verify every listed copy, collect the stripes.

    Args:
        every_copy: keep every valid copy's bytes in :attr:`Inventory.copies`
            (garbage collection needs them); the copies are read either way,
            to find each key's newest version.

    Never raises for node failures: they land in :attr:`Inventory.unreachable`,
    :attr:`Inventory.bad_records` and :attr:`Inventory.copy_problems`.  A copy
    that vanished since the listing is no copy.
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
        results = await asyncio.gather(*(read(key, node_id) for node_id in order))
        found = {node_id: result for node_id, result in zip(order, results, strict=True)
                 if isinstance(result, RecordCopy)}
        problems = [result for result in results if isinstance(result, str)]
        top = newest(copy.record for copy in found.values())
        if top is None:
            if problems:
                inv.bad_records[key] = "; ".join(problems)
            return
        inv.versions[key] = {node_id: copy.record.digest for node_id, copy in found.items()}
        if top.tombstone:
            inv.tombstones[key] = top
        else:
            inv.add(top)
        inv.copy_problems.extend(f"record {key} on {why}" for why in problems)
        if every_copy:
            inv.copies[key] = found

    await asyncio.gather(*(one(key) for key in sorted(inv.listings)))
    return inv

"""What the network holds: every valid record and the stripes they reference.

Repair, garbage collection, pins and status start here: the records of the
whole network are scanned (:class:`storage_network.upkeep.record_scan.RecordScan`:
every node's listing walked page by page, every listed copy read and
verified, bad copies logged and skipped) and kept.  The newest valid version
of a key decides what the key is (docs/consistency.md): a record (the key is
live) or a tombstone (the key was deleted; its stripes are no longer
needed).  The manifests of the live records then give every stripe the
network must keep, with the records that reference it.

An inventory holds the whole network's records in memory; a pass that needs
only a sample or one node's share (the audit) iterates the scan itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from storage_network.client import NetworkClient
from storage_network.upkeep.record_scan import RecordCopy, RecordScan
from storage_network.wire.manifest import ChunkRef
from storage_network.wire.record import Record
from storage_network.wire.write_auth import PublisherKey

__all__ = ["Inventory", "RecordCopy", "Stripe", "take_inventory"]


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


@dataclass
class Inventory:
    """Records and stripes found in the network.

    Every listed copy of every key is read and verified; the key's *newest*
    valid version (largest signed ``created``, ties by the envelope's
    SHA-256: :func:`storage_network.wire.record.newest`) decides what it is:

    Attributes:
        records: live keys: key -> its newest version, a record.
        tombstones: deleted keys: key -> its newest version, a tombstone.
        last_read: record key -> its latest read time over the nodes listing it
            (unix seconds; gc's idle rule).
        versions: record key -> node id -> :attr:`Record.digest` of the valid
            version that node serves (nodes serving none or an invalid one are absent).
        stripes: stripe root -> stripe of a live record.
        bad_records: record key -> why no listed copy could be opened.
        unreachable: node id -> why it could not be listed.
        copies: with ``every_copy``: record key -> node id -> its valid copy
            (any version).
        copy_problems: why a listed copy of a key with another valid copy
            could not be read or opened.
    """

    records: dict[str, Record] = field(default_factory=dict)
    tombstones: dict[str, Record] = field(default_factory=dict)
    last_read: dict[str, float] = field(default_factory=dict)
    versions: dict[str, dict[str, bytes]] = field(default_factory=dict)
    stripes: dict[bytes, Stripe] = field(default_factory=dict)
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


async def take_inventory(net: NetworkClient, trusted: dict[str, PublisherKey] | None = None,
                         *, every_copy: bool = False) -> Inventory:
    """Scan every node's records, keep every key's newest version, collect the stripes.

    Args:
        every_copy: keep every valid copy's bytes in :attr:`Inventory.copies`
            (garbage collection needs them); the copies are read either way,
            to find each key's newest version.

    Never raises for node failures: they land in :attr:`Inventory.unreachable`,
    :attr:`Inventory.bad_records` and :attr:`Inventory.copy_problems`.  A copy
    that vanished since the listing is no copy.
    """
    inv = Inventory()
    scan = RecordScan(net, trusted)
    async for item in scan:
        key = item.key
        inv.last_read[key] = max(entry.atime for entry in item.listings.values())
        top = item.newest
        if top is None:
            if item.problems:
                inv.bad_records[key] = "; ".join(item.problems)
            continue
        inv.versions[key] = {node_id: copy.record.digest
                             for node_id, copy in item.copies.items()}
        if top.tombstone:
            inv.tombstones[key] = top
        else:
            inv.add(top)
        inv.copy_problems.extend(f"record {key} on {why}" for why in item.problems)
        if every_copy:
            inv.copies[key] = item.copies
    inv.unreachable = scan.unreachable
    return inv

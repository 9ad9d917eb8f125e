"""Scan every record of the network, one key at a time, holding a page per node.

Every node's record listing is walked page by page
(:func:`storage_network.nodes.listing_pages.walk_records`, key order) and the
walks are merged, so the keys come out sorted, each with what every node
listing it said.  Every listed copy of a key is read (peek: the scan does not
count as a use) and verified under the trusted publisher keys; the newest
valid version (largest signed ``created``, ties by the envelope's SHA-256:
:func:`storage_network.wire.record.newest`) decides what the key is: a record
(live) or a tombstone (deleted).  Copies on removed nodes are not read.

Memory: two listing pages per node and :data:`KEYS_IN_FLIGHT` keys being
read, whatever the size of the network; what a caller keeps of each
:class:`ScannedKey` is its own choice (:mod:`storage_network.upkeep.record_table`
keeps it on disk for garbage collection and repair, the audit one sample per node).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from storage_network.client import NetworkClient
from storage_network.errors import NodeError, RecordError
from storage_network.nodes import listing_pages
from storage_network.nodes.listing_pages import walk_records
from storage_network.wire.listing import ListedRecord
from storage_network.wire.record import Record, newest, open_record
from storage_network.wire.write_auth import PublisherKey

log = logging.getLogger("nixshard.network")
READS_IN_FLIGHT = 32
"""Record copies read at once."""
KEYS_IN_FLIGHT = 256
"""Keys whose copies are read before the next are taken from the listings."""
NAMES_IN_FLIGHT = 2_000_000
"""Listing names held at most over all nodes (two pages each): the page size
shrinks as the network grows, down to :data:`MIN_PAGE`."""
MIN_PAGE = 100


@dataclass(frozen=True)
class RecordCopy:
    """One node's copy of a record: its exact bytes and the record they open to."""

    data: bytes
    record: Record


@dataclass
class ScannedKey:
    """One record key as the network holds it.

    Attributes:
        key: the record key.
        listings: node id -> what that node's listing said of the key.
        copies: node id -> its valid copy (any version; nodes serving none or
            an invalid one are absent).
        problems: why listed copies could not be read or opened, one text each.
        newest: the newest valid version (record or tombstone), None if no
            copy could be opened.
    """

    key: str
    listings: dict[str, ListedRecord]
    copies: dict[str, RecordCopy] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    newest: Record | None = None


class RecordScan:
    """An async iterator of :class:`ScannedKey` in key order, over every node's listing.

    Iterate it once.  Afterwards :attr:`unreachable` holds the nodes whose
    listing failed (node id -> why): the keys only they hold were not seen.

    Args:
        net: the network client (its nodes are listed and read).
        trusted: publisher keys records are opened under (default: the network's).
        page: listing names asked for per page (default:
            :data:`storage_network.nodes.listing_pages.PAGE`, less in a network of
            more than :data:`NAMES_IN_FLIGHT` / (2 x that) nodes).
    """

    def __init__(self, net: NetworkClient, trusted: dict[str, PublisherKey] | None = None,
                 *, page: int | None = None) -> None:
        self.net = net
        self.trusted = net.network.publishers if trusted is None else trusted
        nodes = max(1, len(net.network.nodes))
        self.page = page or max(MIN_PAGE, min(listing_pages.PAGE,
                                              NAMES_IN_FLIGHT // (2 * nodes)))
        self.unreachable: dict[str, str] = {}
        self._reads = asyncio.Semaphore(READS_IN_FLIGHT)
        self._removed = {n.id for n in net.network.nodes if n.state == "removed"}

    async def _listed(self) -> AsyncIterator[tuple[str, dict[str, ListedRecord]]]:
        """``(key, node id -> listing entry)`` in key order, merged over every node's walk."""
        walks = {n.id: walk_records(self.net.nodes[n.id], self.page)
                 for n in self.net.network.nodes}
        heap: list[tuple[str, str, ListedRecord]] = []

        async def pull(node_id: str) -> None:
            try:
                entry = await anext(walks[node_id])
            except StopAsyncIteration:
                return
            except NodeError as exc:
                log.warning("node %s could not list its records: %s", node_id, exc)
                self.unreachable[node_id] = str(exc)
                return
            heapq.heappush(heap, (entry.key, node_id, entry))

        try:
            await asyncio.gather(*(pull(node_id) for node_id in walks))
            while heap:
                key = heap[0][0]
                group: dict[str, ListedRecord] = {}
                while heap and heap[0][0] == key:
                    _, node_id, entry = heapq.heappop(heap)
                    group[node_id] = entry
                for node_id in group:
                    await pull(node_id)
                yield key, group
        finally:
            for walk in walks.values():
                await walk.aclose()

    async def _fetch(self, key: str, node_id: str) -> bytes | str | None:
        """Node ``node_id``'s copy of ``key`` as bytes; None when it no longer serves
        one; else why it could not be read."""
        async with self._reads:
            try:
                return await self.net.nodes[node_id].get_record(key, peek=True)
            except NodeError as exc:
                return f"node {node_id} could not be read: {exc}"

    def _open(self, key: str, copies: list[bytes]) -> list[Record | str]:
        """Each distinct copy opened (signature checked) once; why, for one that fails."""
        opened: list[Record | str] = []
        for data in copies:
            try:
                opened.append(open_record(self.trusted, key, data))
            except RecordError as exc:
                opened.append(str(exc))
        return opened

    async def _key(self, key: str, listings: dict[str, ListedRecord]) -> ScannedKey:
        """Read every listed copy of ``key`` (not those of removed nodes) and open each
        distinct one (copies are usually the same bytes: one signature check)."""
        item = ScannedKey(key, listings)
        order = [node_id for node_id in listings if node_id not in self._removed]
        fetched = await asyncio.gather(*(self._fetch(key, node_id) for node_id in order))
        distinct = list(dict.fromkeys(data for data in fetched if isinstance(data, bytes)))
        opened = dict(zip(distinct, await asyncio.to_thread(self._open, key, distinct),
                          strict=True)) if distinct else {}
        for node_id, data in zip(order, fetched, strict=True):
            if isinstance(data, str):
                item.problems.append(data)
            elif data is not None:
                record = opened[data]
                if isinstance(record, str):
                    log.warning("node %s holds a bad record %s: %s", node_id, key, record)
                    item.problems.append(f"node {node_id} could not be opened: {record}")
                else:
                    item.copies[node_id] = RecordCopy(data, record)
        item.newest = newest(copy.record for copy in item.copies.values())
        return item

    async def __aiter__(self) -> AsyncIterator[ScannedKey]:
        batch: list[tuple[str, dict[str, ListedRecord]]] = []
        async for listed in self._listed():
            batch.append(listed)
            if len(batch) >= KEYS_IN_FLIGHT:
                for item in await asyncio.gather(*(self._key(*b) for b in batch)):
                    yield item
                batch = []
        for item in await asyncio.gather(*(self._key(*b) for b in batch)):
            yield item

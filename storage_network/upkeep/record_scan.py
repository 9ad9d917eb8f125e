"""Scan every record of the network, one key at a time, holding a page per node.

Every node's record listing is walked page by page
(:func:`storage_network.nodes.listing_pages.walk_records`, key order) and the
walks are merged, so the keys come out sorted, each with what every node
listing it said.  Every listed copy of a key is read (peek: the scan does not
count as a use), :data:`KEYS_IN_FLIGHT` keys at a time with one batch read per
node (``get_records``; a key the batch says the node no longer holds is asked
again alone, whose absence the node signs; a node whose batch answer is too
large or refused is read one key at a time), and verified under the trusted
publisher keys; the newest
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
from storage_network.errors import NodeAnswerError, NodeError, NodeStatusError, RecordError
from storage_network.nodes import listing_pages
from storage_network.nodes.listing_pages import walk_records
from storage_network.wire.listing import ListedRecord
from storage_network.wire.record import Record, newest, open_record
from storage_network.wire.write_auth import PublisherKey

log = logging.getLogger("nixshard.network")
READS_IN_FLIGHT = 32
"""Record copies read at once one at a time (absences confirmed, fallbacks)."""
BATCHES_IN_FLIGHT = 8
"""Batch reads (one node, many keys) at once: with answers capped at
:data:`~storage_network.nodes.limits.RECORD_BATCH_ANSWER_BYTES`, at most 64 MiB of
batch answers held."""
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
        self._batches = asyncio.Semaphore(BATCHES_IN_FLIGHT)
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

    async def _fetch_node(self, node_id: str, keys: list[str]
                          ) -> list[bytes | str | None]:
        """Node ``node_id``'s copies of ``keys`` (as :meth:`_fetch` answers each), in
        one batch read; absences are confirmed one key at a time, and a batch the
        node answers too large, malformed or refuses is read one key at a time."""
        try:
            async with self._batches:
                got: list[bytes | str | None] = list(
                    await self.net.nodes[node_id].get_records(keys))
        except (NodeAnswerError, NodeStatusError) as exc:
            log.info("node %s: batch read of %d records failed (%s); reading them one "
                     "at a time", node_id, len(keys), exc)
            return list(await asyncio.gather(*(self._fetch(key, node_id) for key in keys)))
        except NodeError as exc:
            return [f"node {node_id} could not be read: {exc}"] * len(keys)
        absent = [i for i, data in enumerate(got) if data is None]
        for i, data in zip(absent, await asyncio.gather(
                *(self._fetch(keys[i], node_id) for i in absent)), strict=True):
            got[i] = data
        return got

    def _open(self, key: str, copies: list[bytes]) -> list[Record | str]:
        """Each distinct copy opened (signature checked) once; why, for one that fails."""
        opened: list[Record | str] = []
        for data in copies:
            try:
                opened.append(open_record(self.trusted, key, data))
            except RecordError as exc:
                opened.append(str(exc))
        return opened

    def _open_all(self, fetched: dict[str, dict[str, bytes | str | None]]
                  ) -> dict[str, dict[bytes, Record | str]]:
        """Every distinct copy of every key opened once (blocking)."""
        out = {}
        for key, copies in fetched.items():
            distinct = list(dict.fromkeys(d for d in copies.values() if isinstance(d, bytes)))
            out[key] = dict(zip(distinct, self._open(key, distinct), strict=True))
        return out

    async def _keys(self, batch: list[tuple[str, dict[str, ListedRecord]]]
                    ) -> list[ScannedKey]:
        """Read every listed copy of the keys of ``batch`` (not those of removed nodes;
        one batch read per node) and open each distinct one (copies are usually the
        same bytes: one signature check)."""
        asked: dict[str, list[str]] = {}
        for key, listings in batch:
            for node_id in listings:
                if node_id not in self._removed:
                    asked.setdefault(node_id, []).append(key)
        fetched: dict[str, dict[str, bytes | str | None]] = {key: {} for key, _ in batch}
        answers = await asyncio.gather(*(self._fetch_node(node_id, keys)
                                         for node_id, keys in asked.items()))
        for (node_id, keys), datas in zip(asked.items(), answers, strict=True):
            for key, data in zip(keys, datas, strict=True):
                fetched[key][node_id] = data
        opened = await asyncio.to_thread(self._open_all, fetched)
        items = []
        for key, listings in batch:
            item = ScannedKey(key, listings)
            for node_id in listings:
                if node_id not in fetched[key]:
                    continue
                data = fetched[key][node_id]
                if isinstance(data, str):
                    item.problems.append(data)
                elif data is not None:
                    record = opened[key][data]
                    if isinstance(record, str):
                        log.warning("node %s holds a bad record %s: %s", node_id, key, record)
                        item.problems.append(f"node {node_id} could not be opened: {record}")
                    else:
                        item.copies[node_id] = RecordCopy(data, record)
            item.newest = newest(copy.record for copy in item.copies.values())
            items.append(item)
        return items

    async def __aiter__(self) -> AsyncIterator[ScannedKey]:
        batch: list[tuple[str, dict[str, ListedRecord]]] = []
        async for listed in self._listed():
            batch.append(listed)
            if len(batch) >= KEYS_IN_FLIGHT:
                for item in await self._keys(batch):
                    yield item
                batch = []
        if batch:
            for item in await self._keys(batch):
                yield item

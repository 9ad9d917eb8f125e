"""Walk a node's listing page by page, so a reader holds one page of it at a time.

Audit, garbage collection and the record scan read what every node holds.
Read whole, one listing is a node's share of the network, and all of them at
once are the whole network; walked a page at a time (``list_shards(after,
limit)`` / ``list_records(after, limit)`` of :class:`~storage_network.nodes.base.NodeStore`)
a reader keeps at most two pages per node (the one it reads and the next,
fetched meanwhile).

A page is hostile input like any answer: names must rise strictly (each page
past the last name of the one before), a record listing may name only record
keys (:data:`~storage_network.wire.record.RECORD_KEY_RE`: a name that is none is
never asked for), a page may not be longer than asked,
and a walk ends after :data:`~storage_network.wire.listing.MAX_LISTING_ENTRIES`
names with :class:`~storage_network.errors.NodeAnswerError`.  A page shorter
than asked is the last.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

from storage_network.errors import NodeAnswerError, NodeError
from storage_network.nodes.base import NodeStore
from storage_network.wire.listing import MAX_LISTING_ENTRIES, ListedRecord, ListedShard
from storage_network.wire.record import RECORD_KEY_RE

PAGE = 10_000
"""Names asked for per page (about 1 MB of listing lines)."""

Row = TypeVar("Row", ListedShard, ListedRecord)


async def _walk(node_id: str, what: str, fetch: Callable[[str, int], Awaitable[list[Row]]],
                name: Callable[[Row], str], page: int,
                valid: re.Pattern[str] | None = None) -> AsyncGenerator[Row, None]:
    """The rows of every page of one listing, in name order (see the module docstring)."""
    if page < 1:
        raise ValueError(f"page must be at least 1, not {page}")
    after, total = "", 0
    pending: asyncio.Future[list[Row]] | None = asyncio.ensure_future(fetch(after, page))
    try:
        while pending is not None:
            rows = await pending
            pending = None
            if len(rows) > page:
                raise NodeAnswerError(f"node {node_id}: {what}: a page of {len(rows)} names, "
                                      f"{page} asked for")
            for row in rows:
                if valid is not None and not valid.fullmatch(name(row)):
                    raise NodeAnswerError(f"node {node_id}: {what}: {name(row)[:80]!r} is not "
                                          "a valid name")
                if name(row) <= after:
                    raise NodeAnswerError(f"node {node_id}: {what}: names out of order "
                                          f"({name(row)[:80]!r} after {after[:80]!r})")
                after = name(row)
            total += len(rows)
            if total > MAX_LISTING_ENTRIES:
                raise NodeAnswerError(f"node {node_id}: {what}: more than "
                                      f"{MAX_LISTING_ENTRIES} names")
            if len(rows) == page:
                pending = asyncio.ensure_future(fetch(after, page))
            for row in rows:
                yield row
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, NodeError):
                await pending


def walk_shards(node: NodeStore, page: int | None = None
                ) -> AsyncGenerator[ListedShard, None]:
    """Every shard ``node`` lists, in id order, fetched ``page`` ids (default: :data:`PAGE`)
    at a time.

    Raises (while iterating):
        NodeError: a page could not be read, or broke the rules above
            (:class:`~storage_network.errors.NodeAnswerError`).
    """
    return _walk(node.id, "GET /shards", node.list_shards, lambda row: row.id, page or PAGE)


def walk_records(node: NodeStore, page: int | None = None
                 ) -> AsyncGenerator[ListedRecord, None]:
    """Every record ``node`` lists, in key order, fetched ``page`` keys (default:
    :data:`PAGE`) at a time.

    Raises (while iterating):
        NodeError: as :func:`walk_shards`.
    """
    return _walk(node.id, "GET /records", node.list_records, lambda row: row.key,
                 page or PAGE, RECORD_KEY_RE)

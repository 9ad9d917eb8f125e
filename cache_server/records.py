"""Finding a store path's record and narinfo, with a small in-memory cache."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from nix_formats.narinfo import NarInfo
from nix_records import (
    RecordContentError,
    is_build_log,
    is_pin,
    is_realisation,
    narinfo_from_record,
    record_key,
)
from storage_network import NetworkClient, NotFoundError, Record, fetch_record

from .errors import BadRecordError


@dataclass(frozen=True)
class Entry:
    """A verified record, its parsed narinfo and the narinfo text as served.

    ``cache_key`` names the rebuilt NAR in the local disk cache:
    ``<store hash>-<first 32 hex of sha256(manifest)>``.
    """

    record: Record
    narinfo: NarInfo
    text: str
    cache_key: str


class RecordLookup:
    """Looks up records by store-path hash part; keeps the last ``size`` hits.

    Concurrent lookups of one hash part share one network lookup (its
    answer or its error).  An absent record is remembered for
    ``negative_ttl`` seconds (0: not at all), as Nix itself remembers a
    missing narinfo for ``narinfo-cache-negative-ttl`` (an hour): a path
    pushed by another publisher meanwhile shows up that much later; one
    uploaded through this gateway at once (:meth:`forget`).
    """

    def __init__(self, net: NetworkClient, size: int = 4096, negative_ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self._net = net
        self._size = size
        self._negative_ttl = negative_ttl
        self._clock = clock
        self._cache: OrderedDict[str, Entry] = OrderedDict()
        self._absent: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._running: dict[str, asyncio.Future[Entry]] = {}

    async def get(self, hash_part: str, *, remembered_absence: bool = True) -> Entry:
        """The entry for ``hash_part``.

        ``remembered_absence`` False asks the network even when an absence is
        remembered (before a write, which must not rest on a stale "absent").

        Raises:
            NotFoundError, RecordUnavailableError: from :func:`fetch_record`
                (a remembered absence raises its NotFoundError again).
            BadRecordError: the signed metadata is not a narinfo of that path.
        """
        entry = self._cache.get(hash_part)
        if entry is not None:
            self._cache.move_to_end(hash_part)
            return entry
        absent = self._absent.get(hash_part) if remembered_absence else None
        if absent is not None:
            if self._clock() < absent[0]:
                raise NotFoundError(absent[1])
        self._absent.pop(hash_part, None)
        running = self._running.get(hash_part)
        if running is None:
            running = self._running[hash_part] = asyncio.ensure_future(self._lookup(hash_part))
            running.add_done_callback(lambda _: self._running.pop(hash_part, None))
        return await asyncio.shield(running)

    def forget(self, hash_part: str) -> None:
        """Drop what is remembered of ``hash_part`` (a record was just written for it)."""
        self._cache.pop(hash_part, None)
        self._absent.pop(hash_part, None)

    async def _lookup(self, hash_part: str) -> Entry:
        try:
            record = await fetch_record(self._net, record_key(hash_part))
        except NotFoundError as exc:
            if self._negative_ttl > 0:
                self._absent[hash_part] = (self._clock() + self._negative_ttl, str(exc))
                if len(self._absent) > self._size:
                    self._absent.popitem(last=False)
            raise
        entry = _entry(hash_part, record)
        self._cache[hash_part] = entry
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return entry


def _entry(hash_part: str, record: Record) -> Entry:
    """Check that ``record`` holds the narinfo of ``hash_part`` and make its entry.

    Raises:
        NotFoundError: the record is a build log's, a realisation's or a pin's.
        BadRecordError: the signed metadata is not a narinfo of that path.
    """
    if is_build_log(record.metadata) or is_realisation(record.metadata) \
            or is_pin(record.metadata):
        raise NotFoundError(f"{hash_part} names a build log, a realisation or a pin, "
                            "not a store path")
    try:
        narinfo, text = narinfo_from_record(hash_part, record)
    except RecordContentError as exc:
        raise BadRecordError(str(exc)) from exc
    digest = hashlib.sha256(record.manifest.encode()).hexdigest()[:32]
    return Entry(record, narinfo, text, f"{hash_part}-{digest}")

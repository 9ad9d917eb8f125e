"""Finding a store path's record and narinfo, with a small in-memory cache."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Generic, TypeVar

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

T = TypeVar("T")


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

    @cached_property
    def body(self) -> bytes:
        """:attr:`text` encoded as served (UTF-8), encoded once."""
        return self.text.encode()


class _Memo(Generic[T]):
    """The answers of an async lookup by key: the last ``size`` hits, absences for
    ``negative_ttl`` seconds (0: not at all), and one running lookup per key whose
    answer or error every concurrent caller shares."""

    def __init__(self, size: int, negative_ttl: float, clock: Callable[[], float]) -> None:
        self._size = size
        self._negative_ttl = negative_ttl
        self._clock = clock
        self._cache: OrderedDict[str, T] = OrderedDict()
        self._absent: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._running: dict[str, asyncio.Future[T]] = {}

    def hit(self, key: str) -> T | None:
        """The cached answer for ``key`` (now the most recently used), or None."""
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
        return found

    def absence(self, key: str) -> str | None:
        """The message of the absence of ``key`` remembered within the TTL, or None (an
        expired one is forgotten)."""
        absent = self._absent.get(key)
        if absent is None:
            return None
        if self._clock() < absent[0]:
            return absent[1]
        del self._absent[key]
        return None

    def peek(self, key: str, remembered_absence: bool) -> T | None:
        """The cached answer for ``key``, or None when the network must be asked.

        Raises:
            NotFoundError: an absence remembered within the TTL (``remembered_absence``).
        """
        found = self.hit(key)
        if found is None and remembered_absence:
            message = self.absence(key)
            if message is not None:
                raise NotFoundError(message)
        return found

    async def get(self, key: str, lookup: Callable[[], Awaitable[T]],
                  remembered_absence: bool) -> T:
        found = self.peek(key, remembered_absence)
        if found is not None:
            return found
        self._absent.pop(key, None)
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(self._run(key, lookup))
            running.add_done_callback(lambda _: self._running.pop(key, None))
        return await asyncio.shield(running)

    def forget(self, key: str) -> None:
        self._cache.pop(key, None)
        self._absent.pop(key, None)

    async def _run(self, key: str, lookup: Callable[[], Awaitable[T]]) -> T:
        try:
            found = await lookup()
        except NotFoundError as exc:
            if self._negative_ttl > 0:
                self._absent[key] = (self._clock() + self._negative_ttl, str(exc))
                if len(self._absent) > self._size:
                    self._absent.popitem(last=False)
            raise
        self._cache[key] = found
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return found


class RecordLookup:
    """Looks up records by store-path hash part (:meth:`get`) or by record key
    (:meth:`record`, for records that are no store path's: realisations); keeps the
    last ``size`` hits of each.

    Concurrent lookups of one hash part (or key) share one network lookup (its
    answer or its error).  An absent store path is remembered for
    ``negative_ttl`` seconds (0: not at all), as Nix itself remembers a
    missing narinfo for ``narinfo-cache-negative-ttl`` (an hour): a path
    pushed by another publisher meanwhile shows up that much later; one
    uploaded through this gateway at once (:meth:`forget`).  An absent keyed
    record is not remembered: a realisation committed through any gateway is
    served at once, as the gateway always did (``nix copy --to`` one gateway,
    then substitute from another).
    """

    def __init__(self, net: NetworkClient, size: int = 4096, negative_ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self._net = net
        self._entries: _Memo[Entry] = _Memo(size, negative_ttl, clock)
        self._records: _Memo[Record] = _Memo(size, 0.0, clock)  # absences: see above

    def cached(self, hash_part: str) -> Entry | None:
        """The entry for ``hash_part`` when it is in memory, else None (then see
        :meth:`remembered_absence`, then ask :meth:`get`): a hit without an await.
        Only hash parts :meth:`get` was given are ever in memory."""
        return self._entries.hit(hash_part)

    def remembered_absence(self, hash_part: str) -> str | None:
        """The message of the :class:`NotFoundError` :meth:`get` would raise again for
        ``hash_part`` without asking the network (an absence remembered within
        ``negative_ttl``), or None: a remembered 404 without an await or a raise."""
        return self._entries.absence(hash_part)

    async def get(self, hash_part: str, *, remembered_absence: bool = True) -> Entry:
        """The entry for ``hash_part``.

        ``remembered_absence`` False asks the network even when an absence is
        remembered (before a write, which must not rest on a stale "absent").

        Raises:
            NotFoundError, RecordUnavailableError: from :func:`fetch_record`
                (a remembered absence raises its NotFoundError again).
            BadRecordError: the signed metadata is not a narinfo of that path.
        """
        found = self._entries.peek(hash_part, remembered_absence)  # hits: no extra await
        if found is not None:
            return found
        return await self._entries.get(hash_part, lambda: self._lookup(hash_part),
                                       remembered_absence)

    async def record(self, key: str) -> Record:
        """The verified record under ``key`` (a record key, e.g.
        :func:`nix_records.realisation_record_key`), as :func:`fetch_record` gives it;
        hits cached and concurrent lookups shared as :meth:`get`, absences never
        remembered.

        Raises:
            NotFoundError, RecordUnavailableError: from :func:`fetch_record`.
        """
        return await self._records.get(key, lambda: fetch_record(self._net, key), False)

    def forget(self, hash_part: str) -> None:
        """Drop what is remembered of ``hash_part`` (a record was just written for it)."""
        self._entries.forget(hash_part)

    async def _lookup(self, hash_part: str) -> Entry:
        return _entry(hash_part, await fetch_record(self._net, record_key(hash_part)))


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

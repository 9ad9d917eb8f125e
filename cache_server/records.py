"""Finding a store path's record and narinfo, with a small in-memory cache."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from nix_formats.errors import NixFormatError
from nix_formats.narinfo import NarInfo
from storage_network.errors import NotFoundError
from storage_network.network_client import NetworkClient
from storage_network.record import Record
from storage_network.record_lookup import fetch_record

from .build_logs import LOG_MAGIC
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

    Misses are not cached: a path pushed a moment ago is visible at once.
    """

    def __init__(self, net: NetworkClient, size: int = 4096):
        self._net = net
        self._size = size
        self._cache: OrderedDict[str, Entry] = OrderedDict()

    async def get(self, hash_part: str) -> Entry:
        """The entry for ``hash_part``.

        Raises:
            NotFoundError, RecordUnavailableError: from :func:`fetch_record`.
            BadRecordError: the signed metadata is not a narinfo of that path.
        """
        entry = self._cache.get(hash_part)
        if entry is not None:
            self._cache.move_to_end(hash_part)
            return entry
        record = await fetch_record(self._net, hash_part)
        if record.metadata.startswith(LOG_MAGIC):
            raise NotFoundError(f"{hash_part} names a build log, not a store path")
        try:
            text = record.metadata.decode("utf-8")
            narinfo = NarInfo.parse(text)
        except (UnicodeDecodeError, NixFormatError) as exc:
            raise BadRecordError(f"record {hash_part} holds a malformed narinfo: {exc}") from exc
        if narinfo.store_path.hash_part != hash_part:
            raise BadRecordError(f"record {hash_part} describes {narinfo.store_path.path}")
        if narinfo.nar_size != record.manifest.size:
            raise BadRecordError(f"record {hash_part}: NarSize {narinfo.nar_size} but manifest "
                                 f"holds {record.manifest.size} bytes")
        digest = hashlib.sha256(record.manifest.encode()).hexdigest()[:32]
        entry = Entry(record, narinfo, text, f"{hash_part}-{digest}")
        self._cache[hash_part] = entry
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return entry

"""What a reader remembers of each record key: the newest version it has seen.

A reader never goes back (docs/consistency.md, "Records"): once it has
seen a version of a key, an answer holding only older versions must not be
served.  :class:`RecordMemory` keeps, for the keys seen last,

- the newest :class:`~storage_network.wire.record.Record` itself and its signed
  envelope bytes, for the last ``records`` keys and at most ``record_bytes``
  bytes of envelopes (a record can be served, and copied back to the nodes,
  from here when they answer only older ones);
- its version ``(created, SHA-256 of the envelope)`` only, for the last
  ``versions`` keys (about 200 bytes a key).

Both are least-recently-used: memory is bounded whatever the number of keys.
"""

from __future__ import annotations

from collections import OrderedDict

from storage_network.wire.record import Record

DEFAULT_RECORDS = 4096
DEFAULT_RECORD_BYTES = 64 * 1024 * 1024
DEFAULT_VERSIONS = 100_000

Version = tuple[int, bytes]


class RecordMemory:
    """The newest version seen of each record key, bounded (module docstring).

    Args:
        records: most keys whose Record is kept.
        record_bytes: most envelope bytes of the kept Records.
        versions: most keys whose version is kept.
    """

    def __init__(self, records: int = DEFAULT_RECORDS,
                 record_bytes: int = DEFAULT_RECORD_BYTES,
                 versions: int = DEFAULT_VERSIONS) -> None:
        self._max_records = records
        self._max_bytes = record_bytes
        self._max_versions = versions
        self._records: OrderedDict[str, tuple[Record, bytes]] = OrderedDict()
        self._bytes = 0
        self._versions: OrderedDict[str, Version] = OrderedDict()

    def version(self, key: str) -> Version | None:
        """The newest version of ``key`` seen, or None when none is remembered."""
        return self._versions.get(key)

    def record(self, key: str) -> tuple[Record, bytes] | None:
        """The newest Record of ``key`` seen and its envelope, while they are still kept."""
        held = self._records.get(key)
        if held is None:
            return None
        self._records.move_to_end(key)
        return held

    def saw(self, record: Record, envelope: bytes) -> None:
        """Remember ``record`` (signed as ``envelope``) if it is at least as new as
        what is remembered of its key."""
        key, size = record.key, len(envelope)
        known = self._versions.get(key)
        if known is not None and record.version < known:
            return
        self._versions[key] = record.version
        self._versions.move_to_end(key)
        while len(self._versions) > self._max_versions:
            old, _ = self._versions.popitem(last=False)
            self._drop(old)
        self._drop(key)
        if size <= self._max_bytes:
            self._records[key] = (record, envelope)
            self._bytes += size
        while len(self._records) > self._max_records or self._bytes > self._max_bytes:
            _, (_, dropped) = self._records.popitem(last=False)
            self._bytes -= len(dropped)

    def _drop(self, key: str) -> None:
        held = self._records.pop(key, None)
        if held is not None:
            self._bytes -= len(held[1])

    def __len__(self) -> int:
        """Keys whose version is remembered."""
        return len(self._versions)

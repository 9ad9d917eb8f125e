"""Listing rows: what a node says it holds (``GET /shards``, ``GET /records`` on our node,
object listings on a bucket), with the caps a reader applies to a listing.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage_network.errors import NodeAnswerError

MAX_LISTING_LINE = 256
"""Longest line of a listing answer (bytes)."""
MAX_LISTING_ENTRIES = 20_000_000
"""Most lines a listing may have: 20 million shards (about 1.3 TB of 64 KiB shards).
A node listing more is answering nonsense (its listing is refused)."""


@dataclass(frozen=True)
class ListedShard:
    """A shard a node lists: id, size (bytes), mtime (unix seconds)."""

    id: str
    size: int
    mtime: float


@dataclass(frozen=True)
class ListedRecord:
    """A record a node lists: key, size (bytes), mtime and last read time (unix seconds)."""

    key: str
    size: int
    mtime: float
    atime: float


class ListingLines:
    """A listing answer of whitespace-separated text lines, parsed piece by piece as it
    arrives (no more than one line is kept unparsed).

    Args:
        node_id: the node answering (named in errors).
        what: the request (e.g. ``"GET /shards"``), named in errors.
        fields: fields every line must have.
        most: lines the answer may have (a page's limit).
    """

    def __init__(self, node_id: str, what: str, fields: int,
                 most: int = MAX_LISTING_ENTRIES) -> None:
        self.node_id, self.what, self.fields, self.most = node_id, what, fields, most
        self.rows: list[list[str]] = []
        self._tail = bytearray()

    def _take(self, line: bytes | bytearray) -> None:
        if not line:
            return
        if len(self.rows) >= self.most:
            raise NodeAnswerError(f"node {self.node_id}: {self.what}: more than "
                                  f"{self.most} lines")
        parts = bytes(line).decode("utf-8", "replace").split()
        if len(parts) != self.fields:
            raise NodeAnswerError(f"node {self.node_id}: malformed listing line "
                                  f"{bytes(line[:100])!r}")
        self.rows.append(parts)

    def feed(self, piece: bytes) -> None:
        """Parse the complete lines of ``piece`` (with what was left of the last one).

        Raises:
            NodeAnswerError: a line too long or malformed, or too many lines.
        """
        self._tail.extend(piece)
        lines = self._tail.split(b"\n")
        for line in lines[:-1]:
            self._take(line)
        del self._tail[:len(self._tail) - len(lines[-1])]
        if len(self._tail) > MAX_LISTING_LINE:
            raise NodeAnswerError(f"node {self.node_id}: {self.what}: a line over "
                                  f"{MAX_LISTING_LINE} bytes")

    def finish(self) -> list[list[str]]:
        """The rows, once the answer has ended (its last line may lack a newline).

        Raises:
            NodeAnswerError: the last line is malformed, or one line too many.
        """
        self._take(self._tail)
        self._tail.clear()
        return self.rows

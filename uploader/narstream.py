"""A NAR stream that hashes itself as it is read."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator


class HashingStream:
    """Wraps byte pieces; after iteration, ``sha256`` (32 bytes) and ``size`` (bytes) are set."""

    def __init__(self, pieces: Iterable[bytes]):
        self._pieces = pieces
        self._hash = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._pieces:
            self._hash.update(piece)
            self.size += len(piece)
            yield piece

    @property
    def sha256(self) -> bytes:
        """SHA-256 of everything read so far."""
        return self._hash.digest()

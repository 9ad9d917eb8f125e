"""Upload staging: request bodies streamed to files before they are checked and stored.

``nix copy --to http://...`` PUTs a NAR (``nar/<FileHash>.nar<ext>``)
before its narinfo; the gateway keeps it here until the narinfo arrives
and names it, then ingests it (:mod:`cache_server.ingest`).  A body is
written to ``<name>.part-*`` while hashed, and renamed to ``<name>`` only
when complete and matching the hash its name carries, so a staged file is
always whole.  Staged files nobody claims are removed after ``max_age``
seconds.  Nothing here is visible to readers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from .errors import InsufficientStorageError, UploadRejectedError, UploadTooLargeError
from .request_body import BODY_CUT_SHORT, cut_short

PIECE = 1 << 20
DEFAULT_MAX_AGE = 24 * 3600.0


def file_pieces(path: Path) -> Iterator[bytes]:
    """The bytes of a staged file in pieces of at most :data:`PIECE` bytes (read lazily)."""
    with open(path, "rb") as f:
        while piece := f.read(PIECE):
            yield piece


def _hash_and_write(digest: hashlib._Hash, f: BinaryIO, piece: bytes) -> None:
    digest.update(piece)
    f.write(piece)


class Staging:
    """A directory of complete upload bodies, by name (names are checked by the routes)."""

    def __init__(self, root: Path, max_age: float = DEFAULT_MAX_AGE):
        self.dir = root
        self.max_age = max_age
        self.dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.dir.glob("*.part-*"):
            leftover.unlink(missing_ok=True)
        self.sweep()

    def path(self, name: str) -> Path | None:
        """The staged file ``name``, or None."""
        path = self.dir / name
        return path if path.is_file() else None

    def remove(self, name: str) -> None:
        """Forget a staged file (no error if absent)."""
        (self.dir / name).unlink(missing_ok=True)

    def sweep(self, now: float | None = None) -> int:
        """Remove staged files older than ``max_age`` seconds; returns how many."""
        cutoff = (time.time() if now is None else now) - self.max_age
        gone = 0
        for entry in os.scandir(self.dir):
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                Path(entry.path).unlink(missing_ok=True)
                gone += 1
        return gone

    async def receive(self, request: web.Request, name: str, max_bytes: int,
                      sha256: bytes | None = None) -> Path:
        """Stream the request body to the staged file ``name``; returns its path.

        Args:
            max_bytes: largest body accepted, in bytes.
            sha256: when given, the body's SHA-256 must equal it.

        Raises:
            UploadTooLargeError: Content-Length or the body exceeds ``max_bytes``.
            UploadRejectedError: the body is shorter than its Content-Length
                (also when the client closed the connection before its end),
                or its hash differs from ``sha256``.
            InsufficientStorageError: the staging disk failed (full): nothing is kept.
        """
        declared = request.content_length
        if declared is not None and declared > max_bytes:
            raise UploadTooLargeError(f"{name}: body of {declared} bytes exceeds the limit "
                                      f"of {max_bytes} bytes")
        loop = asyncio.get_running_loop()
        part = self.dir / f"{name}.part-{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(part, "wb") as f:
                pieces = request.content.iter_chunked(PIECE)
                while True:
                    try:
                        piece = await pieces.__anext__()
                    except StopAsyncIteration:
                        break
                    except BODY_CUT_SHORT as exc:
                        raise cut_short(name, size, declared, exc) from exc
                    size += len(piece)
                    if size > max_bytes:
                        raise UploadTooLargeError(f"{name}: body exceeds the limit of "
                                                  f"{max_bytes} bytes")
                    # hashing (GIL released for large pieces) and writing off the event loop
                    await loop.run_in_executor(None, _hash_and_write, digest, f, piece)
            if declared is not None and size != declared:
                raise UploadRejectedError(f"{name}: body ended after {size} of {declared} bytes")
            if sha256 is not None and digest.digest() != sha256:
                raise UploadRejectedError(f"{name}: body's sha256 differs from the hash in its "
                                          "name (truncated or corrupted upload)")
            path = self.dir / name
            os.replace(part, path)
            return path
        except OSError as exc:  # the staging disk, not the client (cut bodies are caught above)
            raise InsufficientStorageError(f"{name}: the gateway cannot stage the upload: "
                                           f"{exc}") from exc
        finally:
            part.unlink(missing_ok=True)

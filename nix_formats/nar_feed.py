"""The feeding engine of the streaming NAR parser: pieces of any size in, exact reads out.

A grammar is written as a generator that yields *requests* — "give me
exactly n bytes" (an ``int``) or "skip n bytes" (:class:`Skip`, for file
contents) — and is sent the bytes it asked for.  :class:`FeedParser` drives
such a generator from pieces of any size (:meth:`FeedParser.feed`), buffering
only a token that straddles two pieces and never file contents, hashes every
byte fed on the way, and keeps the first error: after one the parser is
dead and re-raises it.  :class:`~nix_formats.nar_parser.NarParser` is the NAR
grammar on top of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator

from .errors import NarError

__all__ = ["FeedParser", "Grammar", "Request", "Skip"]


class Skip:
    """Parser request: discard ``n`` bytes (file contents)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


# A request is "give me exactly n bytes" (int > 0) or "skip n bytes".
Request = int | Skip
Grammar = Generator[Request, bytes, None]


class FeedParser:
    """Drives a grammar generator (:data:`Grammar`) from pieces fed in any size.

    A subclass sets its own state, then calls :meth:`_start` with its grammar.
    The grammar reads :attr:`_consumed` (the offset of the next byte it is
    sent) to place its errors and sets :attr:`_expecting` (what it waits for,
    named when input ends early).
    """

    def __init__(self, *, compute_sha256: bool, expecting: str) -> None:
        self._sha = hashlib.sha256() if compute_sha256 else None
        self._fed = 0  # bytes given to feed()
        self._consumed = 0  # bytes handed to the grammar
        self._pending = bytearray()
        self._expecting = expecting
        self._error: NarError | None = None
        self._done = False

    def _start(self, grammar: Grammar) -> None:
        """Start ``grammar``: run it up to its first request."""
        self._grammar = grammar
        self._request: Request = next(grammar)

    @property
    def offset(self) -> int:
        """Number of bytes fed so far."""
        return self._fed

    @property
    def done(self) -> bool:
        """True once the root node is complete (only :meth:`finish` may follow)."""
        return self._done

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Parse the next piece of the NAR (any length, including 0).

        Raises :class:`~nix_formats.errors.NarError` as soon as the bytes
        seen so far cannot start a valid NAR, or if data follows the end of
        the NAR.
        """
        if self._error is not None:
            raise self._error
        mv = memoryview(data).cast("B")
        end = len(mv)
        if end == 0:
            return
        if self._done:
            self._fail(NarError("unexpected data after the end of the NAR", self._consumed))
        if self._sha is not None:
            self._sha.update(mv)
        self._fed += end
        pos = 0
        try:
            while pos < end:
                request = self._request
                if isinstance(request, Skip):
                    take = min(request.n, end - pos)
                    request.n -= take
                    pos += take
                    self._consumed += take
                    if request.n:
                        break
                    self._request = self._grammar.send(b"")
                    continue
                pending = self._pending
                if not pending and end - pos >= request:
                    chunk = bytes(mv[pos : pos + request])
                    pos += request
                else:
                    take = min(request - len(pending), end - pos)
                    pending += mv[pos : pos + take]
                    pos += take
                    if len(pending) < request:
                        break
                    chunk = bytes(pending)
                    pending.clear()
                self._consumed += request
                self._request = self._grammar.send(chunk)
        except StopIteration:
            self._done = True
            if pos < end:
                self._fail(NarError("unexpected data after the end of the NAR", self._consumed))
        except NarError as exc:
            self._fail(exc)

    def _end(self) -> None:
        """Declare the end of input.

        Raises :class:`~nix_formats.errors.NarError` if the NAR is incomplete
        (message says what was expected next and the offset where input ended).
        """
        if self._error is not None:
            raise self._error
        if not self._done:
            self._fail(
                NarError(f"truncated NAR: input ended while expecting {self._expecting}", self._fed)
            )

    def _fail(self, exc: NarError) -> None:
        self._error = exc
        raise exc

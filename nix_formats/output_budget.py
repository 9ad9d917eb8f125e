"""The output cap every decoder of :mod:`nix_formats.compression` works within.

A decoder asks for at most :meth:`OutputBudget.want` bytes at a time and
counts what it got with :meth:`OutputBudget.take`, which raises
:class:`~nix_formats.errors.DecompressedTooLargeError` one byte past the cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .errors import DecompressedTooLargeError

#: The compressed input of a decoder: pieces of any size.
Pieces = Iterable[bytes | bytearray | memoryview]


class OutputBudget:
    """How much more output a decoder may produce: at most ``max_output`` bytes in all.

    :meth:`want` is the size to ask the decoder for next (never more than one
    byte past the cap, so a bomb is caught after decoding ``max_output + 1``
    bytes); :meth:`take` counts what it gave and raises past the cap.
    """

    def __init__(self, method: str, max_output: int, max_piece: int) -> None:
        self.method = method
        self.max_output = max_output
        self.max_piece = max_piece
        self.produced = 0

    def want(self) -> int:
        """The size to ask the decoder for next."""
        return min(self.max_piece, self.max_output - self.produced + 1)

    def take(self, out: bytes, read: int) -> bytes:
        """Count ``out`` (after ``read`` compressed bytes); raise past the cap."""
        self.produced += len(out)
        if self.produced > self.max_output:
            raise DecompressedTooLargeError(self.method, self.max_output, read)
        return out


def split_piece(data: bytes | bytearray | memoryview, max_piece: int) -> Iterator[bytes]:
    """``data`` in pieces of at most ``max_piece`` bytes."""
    if len(data) <= max_piece:
        yield bytes(data)
        return
    view = memoryview(data)
    for start in range(0, len(view), max_piece):
        yield bytes(view[start : start + max_piece])

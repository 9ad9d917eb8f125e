"""Decoding xz and bzip2: concatenated streams through the stdlib decompressors.

liblzma's and libbz2's decoders end at the end of one stream; Nix's reader
goes on to the next (``LZMA_CONCATENATED`` for xz, zero stream padding
included), and so does :func:`decode_streams`, with bounded output.
"""

from __future__ import annotations

import lzma
from collections.abc import Callable, Iterator
from typing import Protocol

from .errors import CompressedDataError
from .output_budget import OutputBudget, Pieces


class _StdDecompressor(Protocol):
    """What :class:`lzma.LZMADecompressor` and :class:`bz2.BZ2Decompressor` share."""

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


def decode_streams(
    method: str, new: Callable[[], _StdDecompressor], pieces: Pieces, budget: OutputBudget
) -> Iterator[bytes]:
    """Decompress concatenated xz or bzip2 streams with bounded output."""
    padding = b"\0" if method == "xz" else b""  # xz stream padding between streams
    decoder: _StdDecompressor | None = None  # None: between streams
    streams = 0
    read = 0  # compressed bytes received
    for piece in pieces:
        data = bytes(piece)
        read += len(data)
        while data or (decoder is not None and not decoder.needs_input and not decoder.eof):
            if decoder is None:
                if padding:
                    data = data.lstrip(padding)
                    if not data:
                        break
                decoder = new()
            try:
                out = decoder.decompress(data, budget.want())
            except (lzma.LZMAError, OSError, EOFError, ValueError) as exc:
                raise CompressedDataError(
                    method, f"corrupt {method} data (stream {streams + 1}, within the first "
                    f"{read} compressed bytes): {exc}", read
                ) from None
            data = b""
            if out:
                yield budget.take(out, read)
            if decoder.eof:
                streams += 1
                data = decoder.unused_data
                decoder = None
    if decoder is not None or streams == 0:
        raise CompressedDataError(
            method,
            f"truncated {method} data: input ended after {read} compressed bytes, inside "
            f"stream {streams + 1}" if read else f"empty {method} data: no stream at all",
            read,
        )

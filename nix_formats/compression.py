"""Streaming decompression of the NAR files a narinfo points to.

A narinfo's ``Compression:`` names how the file at its ``URL`` is compressed
(Nix ``src/libstore/nar-info.cc``; missing means ``bzip2``).  Nix reads them
with ``makeDecompressionSink`` (``src/libutil/compression.cc``); this module
reads the same methods:

- ``none`` (and ``""``): the NAR itself;
- ``xz``: the ``.xz`` container (liblzma's stream decoder with
  ``LZMA_CONCATENATED``: concatenated streams and zero stream padding are read);
- ``bzip2``: one or more concatenated bzip2 streams;
- ``zstd``: one or more concatenated zstd frames (a chunked upload is exactly
  that), skippable frames ignored;
- ``br``: brotli, only when the ``brotli`` module can be imported.

Anything else (Nix reads ``gzip``, ``lzip``, ``lz4`` ... through libarchive)
raises :class:`~nix_formats.errors.UnsupportedCompressionError`.

Output is produced piece by piece, each at most ``max_piece`` bytes, without
ever holding the whole file; input pieces may have any size.  Every decoder
is asked for bounded output (liblzma's and libbz2's ``max_length``,
python-zstandard's ``stream_reader.read(n)``, brotli's ``output_buffer_limit``,
which needs ``brotli`` 1.2 or later), so memory stays bounded however well
the data compresses.  The total output is capped too: the caller says how
many bytes it expects at most (a narinfo's ``NarSize``), and a "zip bomb"
fails with :class:`~nix_formats.errors.DecompressedTooLargeError` after at
most one byte past that cap was decoded, costing neither RAM nor much CPU.

:func:`max_compressed_size` bounds the other side: how large a compressed
file of a given NAR size can honestly be, so a download can be capped
before any byte of it is decompressed.

The decoders are :mod:`nix_formats.xz_bzip2`, :mod:`nix_formats.zstd_frames`
and brotli's (here); each works within an
:class:`~nix_formats.output_budget.OutputBudget`.
"""

from __future__ import annotations

import bz2
import importlib
import lzma
from collections.abc import Iterator
from typing import Any

from .errors import CompressedDataError, DecompressedTooLargeError, UnsupportedCompressionError
from .output_budget import OutputBudget, Pieces, split_piece
from .xz_bzip2 import decode_streams
from .zstd_frames import decode_zstd

brotli: Any
try:  # optional: only needed for Compression: br
    brotli = importlib.import_module("brotli")
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None
# brotli before 1.2 cannot bound the output of one process() call: refused then.
_BROTLI_BOUNDED = brotli is not None and hasattr(brotli.Decompressor, "can_accept_more_data")

__all__ = [
    "MAX_PIECE",
    "SUPPORTED_METHODS",
    "decompress",
    "file_extension",
    "max_compressed_size",
]

#: Default upper bound on the size of each output piece of :func:`decompress`, bytes.
MAX_PIECE = 1 << 20

#: Methods :func:`decompress` accepts here (``br`` only if ``brotli`` imports).
SUPPORTED_METHODS: frozenset[str] = frozenset(
    {"none", "", "xz", "bzip2", "zstd"} | ({"br"} if _BROTLI_BOUNDED else set())
)

# The dictionary an xz stream may ask for: xz -9 needs 65 MiB; a header asking for more
# (up to 1.5 GiB) is refused as corrupt.
_XZ_MEMLIMIT = 256 * 1024 * 1024

#: Slack of :func:`max_compressed_size` over the NAR size: one 64th of it plus 64 KiB.
_EXPANSION_DIVISOR = 64
_EXPANSION_BYTES = 64 * 1024

# Nix src/libstore/binary-cache-store.cc (addToStoreCommon): suffix after ".nar".
_EXTENSIONS = {
    "xz": ".xz",
    "bzip2": ".bz2",
    "zstd": ".zst",
    "lzip": ".lzip",
    "lz4": ".lz4",
    "br": ".br",
}


def file_extension(method: str) -> str:
    """The suffix Nix puts after ``.nar`` in a NAR URL for ``method``.

    ``".xz"``, ``".bz2"``, ``".zst"``, ``".lzip"``, ``".lz4"``, ``".br"``; ``""``
    for ``none`` and any other method (Nix does the same, e.g. for ``gzip``).
    Source: Nix ``src/libstore/binary-cache-store.cc``.
    """
    return _EXTENSIONS.get(method, "")


def _check_method(method: str) -> None:
    """Raise :class:`UnsupportedCompressionError` unless ``method`` is supported here."""
    if method == "br":
        if brotli is None:
            raise UnsupportedCompressionError(
                method, "the Python module 'brotli' is not installed (pip install 'brotli>=1.2')")
        if not hasattr(brotli.Decompressor, "can_accept_more_data"):
            raise UnsupportedCompressionError(
                method, "the installed 'brotli' module is older than 1.2 and cannot bound "
                "its output")
        return
    if method not in SUPPORTED_METHODS:
        raise UnsupportedCompressionError(
            method, f"supported here: {', '.join(sorted(m for m in SUPPORTED_METHODS if m))}"
        )


def max_compressed_size(method: str, nar_size: int) -> int:
    """The largest file, in bytes, that ``method`` honestly makes of ``nar_size`` bytes.

    ``none`` (and ``""``): ``nar_size`` itself.  Every other supported method
    stores incompressible input with a small overhead: zstd at most
    ``n + n/256 + 64`` bytes (``ZSTD_COMPRESSBOUND``, ``lib/zstd.h``), bzip2
    1% + 600 bytes (the bzip2 manual), xz a few bytes per 64 KiB block plus
    headers (liblzma ``lzma_stream_buffer_bound``), brotli 4 bytes per 16 MiB
    plus 6 (``BrotliEncoderMaxCompressedSize``); concatenated frames or
    streams (parallel compressors, chunked uploads) add headers per frame.
    The bound returned, ``nar_size + nar_size // 64 + 64 KiB``, covers all of
    them with room to spare; a file larger than it is not what the narinfo
    says.

    Raises:
        UnsupportedCompressionError: ``method`` is not supported here (see
            :data:`SUPPORTED_METHODS`): nothing of such a file can be checked.
        ValueError: ``nar_size`` is negative.
    """
    if nar_size < 0:
        raise ValueError(f"nar_size must not be negative, got {nar_size}")
    _check_method(method)
    if method in ("none", ""):
        return nar_size
    return nar_size + nar_size // _EXPANSION_DIVISOR + _EXPANSION_BYTES


def decompress(
    method: str, pieces: Pieces, *, max_output: int, max_piece: int = MAX_PIECE
) -> Iterator[bytes]:
    """Decompress ``pieces`` (the compressed file, in pieces of any size) lazily.

    Returns an iterator of non-empty ``bytes`` pieces of at most ``max_piece``
    bytes each, whose concatenation is the uncompressed data (the NAR).
    ``method`` is a narinfo ``Compression:`` value (see the module doc);
    ``max_output`` the most bytes the uncompressed data may have (a
    narinfo's ``NarSize``).

    Raises :class:`~nix_formats.errors.UnsupportedCompressionError` at once
    (before anything is read) for a method not supported here, ``ValueError``
    if ``max_piece`` is not positive or ``max_output`` is negative.  While
    iterating, raises :class:`~nix_formats.errors.DecompressedTooLargeError`
    as soon as the output passes ``max_output`` bytes (at most one byte past
    it is decoded; the pieces yielded before stay within the cap), and
    :class:`~nix_formats.errors.CompressedDataError` if the data is corrupt
    (message from the decoder), has trailing garbage, or is truncated (input
    ends inside a stream or frame, or is empty); its ``offset`` is the number
    of compressed bytes read so far.
    """
    if max_piece <= 0:
        raise ValueError(f"max_piece must be positive, got {max_piece}")
    if max_output < 0:
        raise ValueError(f"max_output must not be negative, got {max_output}")
    _check_method(method)
    budget = OutputBudget(method, max_output, max_piece)
    if method in ("none", ""):
        return _plain(pieces, budget)
    if method == "xz":
        return decode_streams(
            "xz", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT), pieces,
            budget)
    if method == "bzip2":
        return decode_streams("bzip2", bz2.BZ2Decompressor, pieces, budget)
    if method == "zstd":
        return decode_zstd(pieces, budget)
    return _brotli(pieces, budget)


def _plain(pieces: Pieces, budget: OutputBudget) -> Iterator[bytes]:
    read = 0
    for piece in pieces:
        read += len(piece)
        if budget.produced + len(piece) > budget.max_output:
            raise DecompressedTooLargeError(budget.method, budget.max_output, read)
        for out in split_piece(piece, budget.max_piece):
            yield budget.take(out, read)


# -- brotli ----------------------------------------------------------------------------


def _brotli(pieces: Pieces, budget: OutputBudget) -> Iterator[bytes]:
    decoder = brotli.Decompressor()
    read = 0

    def step(data: bytes) -> bytes:
        try:
            # output_buffer_limit: the decoder stops growing its output near this size
            # (in blocks of about 32 KiB) and keeps the rest for calls with empty input
            out: bytes = decoder.process(data, output_buffer_limit=budget.want())
        except brotli.error as exc:
            raise CompressedDataError(
                "br", f"corrupt br data (within the first {read} compressed bytes): {exc}", read
            ) from None
        return budget.take(out, read)

    for piece in pieces:
        data = bytes(piece)
        if not data:
            continue
        if decoder.is_finished():
            raise CompressedDataError(
                "br", f"corrupt br data: data after the end of the stream at byte {read}", read
            )
        read += len(data)
        out = step(data)
        # drain: the decoder may hold more output even when it says it can take input
        while out or not decoder.can_accept_more_data():
            yield from split_piece(out, budget.max_piece)
            out = step(b"")
    if not decoder.is_finished():
        raise CompressedDataError(
            "br", f"truncated br data: input ended after {read} compressed bytes", read
        )

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
"""

from __future__ import annotations

import bz2
import importlib
import lzma
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import IO, Any, Protocol, cast

import zstandard

from .errors import CompressedDataError, DecompressedTooLargeError, UnsupportedCompressionError

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

_Pieces = Iterable[bytes | bytearray | memoryview]


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


class _Budget:
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
        return min(self.max_piece, self.max_output - self.produced + 1)

    def take(self, out: bytes, read: int) -> bytes:
        self.produced += len(out)
        if self.produced > self.max_output:
            raise DecompressedTooLargeError(self.method, self.max_output, read)
        return out


def decompress(
    method: str, pieces: _Pieces, *, max_output: int, max_piece: int = MAX_PIECE
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
    budget = _Budget(method, max_output, max_piece)
    if method in ("none", ""):
        return _plain(pieces, budget)
    if method == "xz":
        return _streams(
            "xz", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT), pieces,
            budget)
    if method == "bzip2":
        return _streams("bzip2", bz2.BZ2Decompressor, pieces, budget)
    if method == "zstd":
        return _zstd(pieces, budget)
    return _brotli(pieces, budget)


def _split(data: bytes | bytearray | memoryview, max_piece: int) -> Iterator[bytes]:
    if len(data) <= max_piece:
        yield bytes(data)
        return
    view = memoryview(data)
    for start in range(0, len(view), max_piece):
        yield bytes(view[start : start + max_piece])


def _plain(pieces: _Pieces, budget: _Budget) -> Iterator[bytes]:
    read = 0
    for piece in pieces:
        read += len(piece)
        if budget.produced + len(piece) > budget.max_output:
            raise DecompressedTooLargeError(budget.method, budget.max_output, read)
        for out in _split(piece, budget.max_piece):
            yield budget.take(out, read)


# -- xz, bzip2: the stdlib decompressor objects --------------------------------------


class _StdDecompressor(Protocol):
    """What :class:`lzma.LZMADecompressor` and :class:`bz2.BZ2Decompressor` share."""

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


def _streams(
    method: str, new: Callable[[], _StdDecompressor], pieces: _Pieces, budget: _Budget
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


# -- zstd ------------------------------------------------------------------------------

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50  # ... to 0x184D2A5F
_ZSTD_FCS_BYTES = (0, 2, 4, 8)
_ZSTD_DICT_BYTES = (0, 1, 2, 4)


class _ZstdFrames:
    """Follows zstd frame boundaries in compressed bytes (RFC 8878, section 3.1).

    python-zstandard's ``stream_reader`` bounds its output but ends silently
    when input stops inside a frame; this walk over frame and block headers
    (a few bytes per block, no decoding) tells a complete stream from a
    truncated one.  Block contents are validated by libzstd, not here.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.read = 0
        self._buf = bytearray()
        self._skip = 0
        self._at_boundary = True
        self._walk = self._grammar()
        self._need = next(self._walk)

    @property
    def between_frames(self) -> bool:
        """True when every byte seen so far belongs to complete frames."""
        return self._at_boundary and not self._buf and not self._skip

    def feed(self, data: bytes) -> None:
        """Follow ``data``, the next compressed bytes; raise on a malformed header."""
        self.read += len(data)
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                continue
            take = min(self._need - len(self._buf), end - pos)
            self._buf += data[pos : pos + take]
            pos += take
            if len(self._buf) == self._need:
                header = bytes(self._buf)
                self._buf.clear()
                self._need = self._walk.send(header)

    def error(self, message: str) -> CompressedDataError:
        """A :class:`CompressedDataError` for ``message`` at the current offset."""
        return CompressedDataError("zstd", f"corrupt zstd data: {message}", self.read)

    def _grammar(self) -> Generator[int, bytes, None]:
        # Yields how many header bytes it needs next; sets _skip for contents.
        while True:
            self._at_boundary = True
            magic = int.from_bytes((yield 4), "little")
            self._at_boundary = False
            if magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
                self._skip = int.from_bytes((yield 4), "little")
                self.frames += 1
                continue
            if magic != _ZSTD_MAGIC:
                raise self.error(f"frame {self.frames + 1} starts with {magic:#010x}, "
                                 f"not the zstd magic number")
            descriptor = (yield 1)[0]
            if descriptor & 0x08:
                raise self.error(f"frame {self.frames + 1} sets a reserved header bit")
            single_segment = descriptor >> 5 & 1
            fcs_bytes = _ZSTD_FCS_BYTES[descriptor >> 6] or single_segment
            rest = (1 - single_segment) + _ZSTD_DICT_BYTES[descriptor & 3] + fcs_bytes
            if rest:
                yield rest
            while True:
                block = int.from_bytes((yield 3), "little")
                kind = block >> 1 & 3
                if kind == 3:
                    raise self.error(f"frame {self.frames + 1} has a block of reserved type")
                self._skip = 1 if kind == 1 else block >> 3
                if block & 1:
                    break
            if descriptor & 0x04:
                self._skip += 4  # content checksum
            self.frames += 1


class _PullSource:
    """A ``read(n)`` file-like view of an iterable of pieces, for ``stream_reader``."""

    def __init__(self, pieces: _Pieces, frames: _ZstdFrames) -> None:
        self._pieces = iter(pieces)
        self._frames = frames
        self._rest = b""

    def read(self, size: int = -1) -> bytes:
        while not self._rest:
            piece = next(self._pieces, None)
            if piece is None:
                return b""
            self._rest = bytes(piece)
        if size < 0 or size >= len(self._rest):
            data, self._rest = self._rest, b""
        else:
            data, self._rest = self._rest[:size], self._rest[size:]
        self._frames.feed(data)
        return data


def _zstd(pieces: _Pieces, budget: _Budget) -> Iterator[bytes]:
    frames = _ZstdFrames()
    source = _PullSource(pieces, frames)
    reader = zstandard.ZstdDecompressor().stream_reader(
        cast(IO[bytes], source), read_size=min(budget.max_piece, 1 << 17),
        read_across_frames=True,
    )
    try:
        while True:
            out = reader.read(budget.want())
            if not out:
                break
            yield budget.take(out, frames.read)
        if source.read(1):  # stream_reader stopped early; libzstd saw no error
            raise frames.error("data after the last frame")
    except zstandard.ZstdError as exc:
        raise frames.error(f"{exc} (within the first {frames.read} compressed bytes)") from None
    if not frames.between_frames or frames.frames == 0:
        raise CompressedDataError(
            "zstd",
            f"truncated zstd data: input ended after {frames.read} compressed bytes, inside "
            f"frame {frames.frames + 1}" if frames.read else "empty zstd data: no frame at all",
            frames.read,
        )


# -- brotli ----------------------------------------------------------------------------


def _brotli(pieces: _Pieces, budget: _Budget) -> Iterator[bytes]:
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
            yield from _split(out, budget.max_piece)
            out = step(b"")
    if not decoder.is_finished():
        raise CompressedDataError(
            "br", f"truncated br data: input ended after {read} compressed bytes", read
        )

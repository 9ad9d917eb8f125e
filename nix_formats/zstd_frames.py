"""Decoding zstd: concatenated frames, skippable frames ignored, truncation detected.

:func:`decode_zstd` decodes with python-zstandard's ``stream_reader``
(``read_across_frames=True``) and follows the frame and block headers with
:class:`ZstdFrames` to tell a complete stream from a truncated one.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import IO, cast

import zstandard

from .errors import CompressedDataError
from .output_budget import OutputBudget, Pieces

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50  # ... to 0x184D2A5F
_ZSTD_FCS_BYTES = (0, 2, 4, 8)
_ZSTD_DICT_BYTES = (0, 1, 2, 4)


class ZstdFrames:
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

    def __init__(self, pieces: Pieces, frames: ZstdFrames) -> None:
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


def decode_zstd(pieces: Pieces, budget: OutputBudget) -> Iterator[bytes]:
    """Decompress concatenated zstd frames with bounded output; raise when truncated."""
    frames = ZstdFrames()
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

"""Content-defined chunking of a byte stream with FastCDC.

:func:`iter_chunks` cuts a stream of pieces of any size into the same chunks
FastCDC would cut from the whole stream at once, holding at most about
``4 * max_size`` bytes: a cut point depends only on the bytes from the chunk
start to at most ``max_size`` bytes after it, so every chunk that starts at
least ``max_size`` bytes before the end of the buffer is final.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator

from fastcdc.fastcdc_cy import fastcdc_cy

from storage_network.config import ChunkingParams


def iter_chunks(pieces: Iterable[bytes], params: ChunkingParams) -> Iterator[bytes]:
    """Yield the content-defined chunks (bytes) of the concatenation of ``pieces``.

    Chunks are between ``params.min_size`` and ``params.max_size`` bytes,
    except the last, which may be shorter.  Memory: O(max_size).
    """
    window = 4 * params.max_size
    buf = bytearray()
    for piece in pieces:
        buf += piece
        if len(buf) >= window:
            consumed = yield from _cut(buf, params, final=False)
            del buf[:consumed]
    if buf:
        yield from _cut(buf, params, final=True)


def _cut(buf: bytearray, params: ChunkingParams,
         final: bool) -> Generator[bytes, None, int]:
    """Yield the final chunks of ``buf``; return how many bytes they cover."""
    view = memoryview(buf)
    end = 0
    try:
        for c in fastcdc_cy(view, params.min_size, params.avg_size, params.max_size):
            if not final and c.offset + params.max_size > len(buf):
                break
            yield bytes(view[c.offset:c.offset + c.length])
            end = c.offset + c.length
    finally:
        view.release()
    return end

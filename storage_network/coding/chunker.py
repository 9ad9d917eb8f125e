"""Content-defined chunking of a byte stream with FastCDC.

:func:`iter_chunks` cuts a stream of pieces of any size into the same chunks
FastCDC would cut from the whole stream at once, holding at most about
``4 * max_size`` bytes: a cut point depends only on the bytes from the chunk
start to at most ``max_size`` bytes after it, so every chunk that starts at
least ``max_size`` bytes before the end of the buffer is final.
:func:`iter_chunk_views` yields the same chunks as views into that buffer,
for a caller that copies each chunk once to where it is worked on.
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
    for view in iter_chunk_views(pieces, params):
        yield bytes(view)


def iter_chunk_views(pieces: Iterable[bytes], params: ChunkingParams) -> Iterator[memoryview]:
    """The chunks of :func:`iter_chunks`, each as a read-only view into the chunker's buffer.

    A view is valid only until the next chunk is asked for: it is released
    then (using it afterwards raises ``ValueError``), so copy what you keep.
    Memory: O(max_size); no copy per chunk.
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
         final: bool) -> Generator[memoryview, None, int]:
    """Yield views of the final chunks of ``buf`` (each released when the next is
    asked for); return how many bytes they cover."""
    view = memoryview(buf).toreadonly()
    end = 0
    try:
        for c in fastcdc_cy(view, params.min_size, params.avg_size, params.max_size):
            if not final and c.offset + params.max_size > len(buf):
                break
            chunk = view[c.offset:c.offset + c.length]
            try:
                yield chunk
            finally:
                chunk.release()
            end = c.offset + c.length
    finally:
        view.release()
    return end

"""``Range: bytes=...`` on NARs (RFC 9110 section 14), and the frames a range needs.

Nix resumes an interrupted download with a single range when the server
sent ``Accept-Ranges: bytes`` (and no Content-Encoding): Nix
``src/libstore/filetransfer.cc``.  One range per request is served;
several ranges, or a unit other than bytes, are answered 416.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from storage_network import FetchPlan, NetworkClient, stream_payload

from .errors import RangeNotSatisfiableError


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, end)`` of a body of ``size`` bytes; ``partial``: answer 206."""

    start: int
    end: int
    size: int
    partial: bool

    def headers(self) -> dict[str, str]:
        """Content-Length, Accept-Ranges and, for a 206, Content-Range."""
        out = {"Content-Length": str(self.end - self.start), "Accept-Ranges": "bytes"}
        if self.partial:
            out["Content-Range"] = f"bytes {self.start}-{self.end - 1}/{self.size}"
        return out


def parse_range(request: web.BaseRequest, size: int) -> ByteRange:
    """The range a request asks of a body of ``size`` bytes (all of it without ``Range``).

    Raises:
        RangeNotSatisfiableError: malformed, multiple, or starting at or past the end.
    """
    if "Range" not in request.headers:
        return ByteRange(0, size, size, False)
    try:
        wanted = request.http_range
    except ValueError as exc:
        raise RangeNotSatisfiableError(
            f"bad Range {request.headers['Range'][:60]!r}: want one bytes=START-[END] "
            "or bytes=-SUFFIX", size) from exc
    start, stop = wanted.start, wanted.stop
    if start is None and stop is None:
        return ByteRange(0, size, size, False)
    if start is None:
        start = 0
    if start < 0:  # suffix range: the last -start bytes
        start = max(0, size + start)
        stop = size
    stop = size if stop is None else min(stop, size)
    if start >= size or start >= stop:
        raise RangeNotSatisfiableError(
            f"Range {request.headers['Range'][:60]!r} selects nothing of {size} bytes", size)
    return ByteRange(start, stop, size, (start, stop) != (0, size))


async def range_frames(net: NetworkClient, plan: FetchPlan, wanted: ByteRange,
                       prefetch: int) -> AsyncIterator[bytes]:
    """Bytes ``wanted.start..wanted.end`` of the NAR's frames, fetching only the chunks needed.

    Raises:
        ChunkUnavailableError: from :func:`stream_payload`.
    """
    manifest = plan.manifest
    first, offset, begin = len(manifest.chunks), 0, 0
    last = first
    for i, ref in enumerate(manifest.chunks):
        if offset + manifest.frame_size(ref) > wanted.start and first == len(manifest.chunks):
            first, begin = i, offset
        if offset < wanted.end:
            last = i + 1
        offset += manifest.frame_size(ref)
    if (first, last) == (0, len(manifest.chunks)):
        sub = plan
    else:
        plan.drop_early()
        sub = FetchPlan(dataclasses.replace(manifest, chunks=manifest.chunks[first:last]),
                        plan.holders[first:last])
    pos = begin
    async for frame in stream_payload(net, sub, prefetch):
        lo, hi = max(wanted.start - pos, 0), min(wanted.end - pos, len(frame))
        pos += len(frame)
        if lo < hi:
            yield frame[lo:hi] if (lo, hi) != (0, len(frame)) else frame

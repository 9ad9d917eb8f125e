"""Access logs of the node and the gateway: one line per answered request, written in batches.

A line is ``ADDR "METHOD PATH HTTP/x.y" STATUS BYTES SECONDS`` (what
aiohttp's ``'%a "%r" %s %b %Tf'`` gives: BYTES is the response's body
length, SECONDS the handling time), under the usual time stamp and logger
name, followed by ``aborted (REASON)`` when the handler cut the transfer
off after the headers (:func:`http_serving.metrics.mark_aborted`):
STATUS is then the status the client got, BYTES what was written before
the cut.  aiohttp's format interpreter and a write + flush per line cost about
25 µs a request, a third of a small narinfo answer, so :class:`AccessLogger`
formats with one ``%`` and :func:`buffered_logger` hands the lines to the
stream in batches: when 512 are waiting, when a warning or worse is
logged, every second, and at exit.

Several processes (the gateway's workers) share one log stream: a batch
goes to the stream's file descriptor in ``write()`` calls that each carry
whole lines and at most ``PIPE_BUF`` (4096) bytes, unless one line alone
is longer.  Such a write is never split by another process's: ``O_APPEND``
files and sockets take it whole, and POSIX guarantees it for pipes up to
``PIPE_BUF``.  So the lines of the workers interleave, never their bytes.
"""

from __future__ import annotations

import atexit
import io
import logging
import logging.handlers
import os
import select
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from http_serving.metrics import aborted

LINE_FORMAT = "%(asctime)s %(name)s %(message)s"
BATCH_LINES = 512
FLUSH_EVERY = 1.0  # seconds a logged line waits at most before it is written
PIPE_BUF = select.PIPE_BUF  # bytes a pipe writes without interleaving (POSIX: >= 512)


class AccessLogger(AbstractAccessLogger):
    """aiohttp access logger writing the line described in the module docstring."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse,
            time: float) -> None:
        """Log one answered request (``time``: seconds taken)."""
        version = request.version
        reason = aborted(request)
        self.logger.info('%s "%s %s HTTP/%d.%d" %d %d %.6f%s', request.remote, request.method,
                         request.path_qs, version.major, version.minor, response.status,
                         response.body_length, time,
                         "" if reason is None else f" aborted ({reason})")


def buffered_logger(name: str, stream: TextIO | None = None) -> logging.Logger:
    """The logger ``name``, writing to ``stream`` (default stderr) in batches, not propagating.

    A daemon thread flushes the batch every :data:`FLUSH_EVERY` seconds and
    an ``atexit`` hook flushes what is left.  Call it from a program's entry
    point: it also stops every log record of the process from looking up
    its thread, process and process names (``logging.logThreads`` and
    friends), which no format here prints and which cost half of a
    record's making.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LineBatchHandler(stream or sys.stderr)
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    stop = threading.Event()

    def flush_periodically() -> None:
        while not stop.wait(FLUSH_EVERY):
            handler.flush()

    threading.Thread(target=flush_periodically, name=f"{name}-flush", daemon=True).start()

    def close() -> None:
        stop.set()
        handler.flush()

    atexit.register(close)
    return logger


class LineBatchHandler(logging.handlers.MemoryHandler):
    """Keeps up to :data:`BATCH_LINES` records and writes them to ``stream`` as whole
    lines (format :data:`LINE_FORMAT`), at most :data:`PIPE_BUF` bytes per
    ``write()`` (see the module docstring); flushed when full, on a warning
    or worse, and by :meth:`flush`.

    A stream without a file descriptor (``io.StringIO``) gets the batch with one
    ``write`` call instead.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(BATCH_LINES, flushLevel=logging.WARNING, target=None,
                         flushOnClose=True)
        self.stream = stream
        self.setFormatter(logging.Formatter(LINE_FORMAT))

    def flush(self) -> None:
        """Write out the records kept so far (errors go to ``handleError``)."""
        self.acquire()
        try:
            records, self.buffer = self.buffer, []
            if not records:
                return
            try:
                text = "".join(f"{self.format(record)}\n" for record in records)
                write_whole_lines(self.stream, text)
            except Exception:  # noqa: BLE001 - logging never raises into the server
                self.handleError(records[-1])
        finally:
            self.release()


def write_whole_lines(stream: TextIO, text: str) -> None:
    """Write ``text`` (lines ending in ``\n``) to ``stream``: to its file descriptor in
    pieces of whole lines of at most :data:`PIPE_BUF` bytes, each with one
    ``write()`` (what ``stream`` still buffers is flushed first), or with
    ``stream.write`` when it has no file descriptor.

    Raises:
        OSError: the descriptor cannot be written.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    encoding = getattr(stream, "encoding", None) or "utf-8"
    for piece in line_pieces(text.encode(encoding, "backslashreplace"), PIPE_BUF):
        view = memoryview(piece)
        while view:
            view = view[os.write(fd, view):]


def line_pieces(data: bytes, limit: int) -> Iterator[bytes]:
    """``data`` (lines ending in ``\n``) cut after whole lines into pieces of at most
    ``limit`` bytes; a longer line is a piece of its own."""
    start = 0
    while start < len(data):
        end = start + limit
        if end >= len(data):
            yield data[start:]
            return
        cut = data.rfind(b"\n", start, end)
        if cut < 0:  # one line longer than limit: whole, alone
            cut = data.find(b"\n", end)
            if cut < 0:
                yield data[start:]
                return
        yield data[start:cut + 1]
        start = cut + 1


def flush_logger(name: str) -> None:
    """Write out what logger ``name``'s handlers hold (when a server stops, before its
    last line)."""
    for handler in logging.getLogger(name).handlers:
        handler.flush()

"""Access logs of the node and the gateway: one line per answered request, written in batches.

A line is ``ADDR "METHOD PATH HTTP/x.y" STATUS BYTES SECONDS`` (what
aiohttp's ``'%a "%r" %s %b %Tf'`` gives: BYTES is the response's body
length, SECONDS the handling time), under the usual time stamp and logger
name (:data:`LINE_FORMAT`: ``2026-12-03 11:08:51,123 nixshard.access ...``),
followed by ``aborted (REASON)`` when the handler cut the transfer off after
the headers (:func:`http_serving.metrics.mark_aborted`): STATUS is then the
status the client got, BYTES what was written before the cut.

Cost: aiohttp's format interpreter, then a ``LogRecord`` per line and a
write + flush per line, cost about 25 µs a request, a third of a small
narinfo answer.  So :class:`AccessLogger` formats with one ``%``, and when
its logger writes only through a :class:`LineBatchHandler` (what
:func:`buffered_logger` sets up) it hands that handler the finished line
(time stamp made once a second) without making a ``LogRecord``; any other
logger (a test's capture handler) gets an ordinary ``logger.info``.  The
handler keeps finished lines and writes them in batches: when
:data:`BATCH_LINES` are waiting, when a warning or worse is logged through
it, every :data:`FLUSH_EVERY` seconds, and at exit.

Several processes (the gateway's workers) share one log stream: a batch
goes to the stream's file descriptor in ``write()`` calls that each carry
whole lines and at most ``PIPE_BUF`` (4096) bytes, unless one line alone
is longer.  Such a write is never split by another process's: ``O_APPEND``
files and sockets take it whole, and POSIX guarantees it for pipes up to
``PIPE_BUF``.  So the lines of the workers interleave, never their bytes.
"""

from __future__ import annotations

import atexit
import collections
import io
import logging
import os
import select
import sys
import threading
import time
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
    """aiohttp access logger writing the line described in the module docstring.

    aiohttp makes one per connection: whether its logger writes only through a
    :class:`LineBatchHandler` (then lines go straight to it) is decided then.
    """

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._batch = LineBatchHandler.sole_handler_of(logger)
        self._name = logger.name

    def log(self, request: web.BaseRequest, response: web.StreamResponse,
            time: float) -> None:
        """Log one answered request (``time``: seconds taken)."""
        version = request.version
        reason = aborted(request)
        message = (f'{request.remote} "{request.method} {request.path_qs} '
                   f'HTTP/{version.major}.{version.minor}" {response.status} '
                   f"{response.body_length} {time:.6f}")
        if reason is not None:
            message = f"{message} aborted ({reason})"
        batch = self._batch
        if batch is not None:
            batch.add_line(f"{batch.time_stamp()} {self._name} {message}\n")
        else:
            self.logger.info("%s", message)


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


class LineBatchHandler(logging.Handler):
    """Keeps finished lines (format :data:`LINE_FORMAT`) and writes them to ``stream``
    as whole lines, at most :data:`PIPE_BUF` bytes per ``write()`` (see the module
    docstring): when :data:`BATCH_LINES` are waiting, when a record of WARNING or
    worse is logged through it, and on :meth:`flush` or :meth:`close`.

    Lines come from log records (:meth:`emit`, formatted at once) or ready-made
    from :class:`AccessLogger` (:meth:`add_line`).  Both may be called from
    any thread: the waiting lines are a deque (appends and pops are atomic) and
    one flush writes at a time.  A stream without a file descriptor
    (``io.StringIO``) gets each batch with one ``write`` call instead.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.NOTSET)
        self.stream = stream
        self.line_formatter = logging.Formatter(LINE_FORMAT)
        self.setFormatter(self.line_formatter)
        self._lines: collections.deque[str] = collections.deque()
        self._writing = threading.Lock()
        self._second = -1  # the whole second self._seconds_stamp shows
        self._seconds_stamp = ""
        self._milli = -1  # the millisecond (since the epoch) self._stamp shows
        self._stamp = ""

    @staticmethod
    def sole_handler_of(logger: logging.Logger) -> LineBatchHandler | None:
        """The :class:`LineBatchHandler` that alone receives ``logger``'s records, with
        its own formatter and no filter (a line may then skip the ``LogRecord``),
        else None."""
        if logger.propagate or logger.filters or logger.disabled or len(logger.handlers) != 1:
            return None
        handler = logger.handlers[0]
        if (not isinstance(handler, LineBatchHandler) or handler.filters
                or handler.level > logging.INFO or handler.formatter is not handler.line_formatter):
            return None
        return handler

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record`` as a finished line; write the batch out at once for a
        warning or worse."""
        try:
            line = f"{self.format(record)}\n"
        except Exception:  # noqa: BLE001 - logging never raises into the server
            self.handleError(record)
            return
        self._lines.append(line)
        if record.levelno >= logging.WARNING or len(self._lines) >= BATCH_LINES:
            self.flush()

    def time_stamp(self) -> str:
        """Now as the ``asctime`` of :data:`LINE_FORMAT` (``2026-12-03 11:08:51,123``;
        local time), its part up to the second made once a second."""
        now = time.time()
        milli = int(now * 1000)
        if milli == self._milli:  # many lines a millisecond under load
            return self._stamp
        second = int(now)
        if second != self._second:
            self._seconds_stamp = time.strftime(logging.Formatter.default_time_format,
                                                self.line_formatter.converter(now))
            self._second = second
        self._milli = milli
        self._stamp = f"{self._seconds_stamp},{int((now - second) * 1000):03d}"
        return self._stamp

    def add_line(self, line: str) -> None:
        """Keep ``line`` (a finished line, ``\\n`` included: what :meth:`emit` keeps of a
        record, e.g. ``f"{self.time_stamp()} {name} {message}\\n"``)."""
        self._lines.append(line)
        if len(self._lines) >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        """Write out the lines kept so far (an error goes to ``handleError``)."""
        with self._writing:
            lines = self._lines
            count = len(lines)
            if not count:
                return
            text = "".join([lines.popleft() for _ in range(count)])
            try:
                write_whole_lines(self.stream, text)
            except Exception:  # noqa: BLE001 - logging never raises into the server
                self.handleError(logging.makeLogRecord(
                    {"msg": "lost a batch of %d log lines", "args": (count,)}))

    def close(self) -> None:
        """Write out what is kept, then close as any handler."""
        self.flush()
        super().close()


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

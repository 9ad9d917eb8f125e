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
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import sys
import threading
from typing import TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from http_serving.metrics import aborted

LINE_FORMAT = "%(asctime)s %(name)s %(message)s"
BATCH_LINES = 512
FLUSH_EVERY = 1.0  # seconds a logged line waits at most before it is written


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
    target = logging.StreamHandler(stream or sys.stderr)
    target.setFormatter(logging.Formatter(LINE_FORMAT))
    handler = logging.handlers.MemoryHandler(BATCH_LINES, flushLevel=logging.WARNING,
                                             target=target, flushOnClose=True)
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


def flush_logger(name: str) -> None:
    """Write out what logger ``name``'s handlers hold (when a server stops, before its
    last line)."""
    for handler in logging.getLogger(name).handlers:
        handler.flush()

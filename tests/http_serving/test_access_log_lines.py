"""Access-log lines stay whole when several processes share one log stream
(http_serving.access_log: each ``write()`` carries whole lines, at most PIPE_BUF bytes),
and the lines AccessLogger hands straight to the batch are the lines log records give."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from http_serving.access_log import (
    LINE_FORMAT,
    PIPE_BUF,
    AccessLogger,
    LineBatchHandler,
    buffered_logger,
    line_pieces,
    write_whole_lines,
)
from tests.support.servers import serve_app

REPO = Path(__file__).resolve().parents[2]
LINES = 4000
# Each writer logs LINES lines through buffered_logger (batches of 512 lines, ~100 kB:
# far more than PIPE_BUF) to its stderr, which is the one pipe both writers share.
WRITER = f"""
import logging, sys
sys.path.insert(0, {str(REPO)!r})
from http_serving.access_log import buffered_logger
log = buffered_logger("nixshard.test.access")
for i in range({LINES}):
    log.info("writer=%s line=%06d %s end", sys.argv[1], i, sys.argv[1] * 150)
"""
LINE_RE = re.compile(r"\A\S+ \S+ nixshard\.test\.access writer=(\w) line=(\d{6}) (\w{150}) end\Z")


def test_pieces_are_whole_lines_within_the_limit() -> None:
    lines = [b"a" * n + b"\n" for n in (10, 3000, 900, 5000, 1, 4095, 20)]
    data = b"".join(lines)
    pieces = list(line_pieces(data, 4096))
    assert b"".join(pieces) == data
    for piece in pieces:
        assert piece.endswith(b"\n")
        assert len(piece) <= 4096 or piece.count(b"\n") == 1  # a longer line goes alone
    assert [len(p) for p in pieces] == [3913, 5001, 2, 4096, 21]


def test_a_stream_without_descriptor_gets_the_text() -> None:
    stream = io.StringIO()
    write_whole_lines(stream, "one\ntwo\n")
    assert stream.getvalue() == "one\ntwo\n"


def test_two_processes_on_one_pipe_never_split_a_line() -> None:
    assert PIPE_BUF >= 512
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert reader.stdin is not None and reader.stdout is not None
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, name], stderr=reader.stdin)
               for name in ("a", "b")]
    reader.stdin.close()
    out = reader.stdout.read().decode()
    assert [w.wait() for w in writers] == [0, 0]
    reader.wait()
    seen: dict[str, list[int]] = {"a": [], "b": []}
    for line in out.splitlines():
        m = LINE_RE.match(line)
        assert m is not None, f"a broken line: {line[:200]!r}"
        assert m.group(3) == m.group(1) * 150
        seen[m.group(1)].append(int(m.group(2)))
    assert seen == {"a": list(range(LINES)), "b": list(range(LINES))}


# -- the batched lines (AccessLogger straight to LineBatchHandler) ---------------------------

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


class Records(logging.Handler):
    """Keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append(record)


async def _get_through(logger: logging.Logger, path: str) -> None:
    """One GET of ``path`` on an app served with ``logger`` as its access log."""

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/a", hello)
    async with serve_app(app, access_log=logger, access_log_class=AccessLogger) as url, \
            aiohttp.ClientSession() as session, session.get(url + path) as resp:
        assert resp.status == 200
        await resp.read()


async def test_a_batched_line_is_the_line_a_log_record_gives() -> None:
    stream = io.StringIO()
    fast = buffered_logger("nixshard.test.fast", stream)
    assert LineBatchHandler.sole_handler_of(fast) is fast.handlers[0]
    await _get_through(fast, "/a?b=1")
    fast.handlers[0].flush()
    line = stream.getvalue()
    assert re.fullmatch(rf'{STAMP} nixshard\.test\.fast 127\.0\.0\.1 "GET /a\?b=1 HTTP/1\.1" '
                        r"200 \d+ \d+\.\d{6}\n", line), line

    records = Records()
    slow = logging.getLogger("nixshard.test.slow")  # another handler: records, as before
    slow.handlers[:] = [records]
    slow.propagate = False
    slow.setLevel(logging.INFO)
    assert LineBatchHandler.sole_handler_of(slow) is None
    await _get_through(slow, "/a?b=1")
    (record,) = records.kept
    made = logging.Formatter(LINE_FORMAT).format(record)
    # the same text but for the time stamp, the logger name and the seconds taken
    assert re.sub(rf"^{STAMP} \S+ | [\d.]+$", "", made) == re.sub(
        rf"^{STAMP} \S+ | [\d.]+\n$", "", line)


async def test_a_filtered_logger_gets_records_its_filter_sees() -> None:
    stream = io.StringIO()
    logger = buffered_logger("nixshard.test.filtered", stream)
    logger.addFilter(lambda record: False)  # drops every line
    try:
        assert LineBatchHandler.sole_handler_of(logger) is None
        await _get_through(logger, "/a")
        logger.handlers[0].flush()
        assert stream.getvalue() == ""
    finally:
        logger.filters.clear()


def test_the_time_stamp_is_the_formatters_asctime() -> None:
    handler = LineBatchHandler(io.StringIO())
    formatter = logging.Formatter(LINE_FORMAT)
    before = formatter.formatTime(logging.makeLogRecord({}))
    stamp = handler.time_stamp()
    after = formatter.formatTime(logging.makeLogRecord({}))
    assert re.fullmatch(STAMP, stamp), stamp
    assert before <= stamp <= after


def test_a_warning_is_written_at_once() -> None:
    stream = io.StringIO()
    logger = buffered_logger("nixshard.test.warned", stream)
    logger.info("first")
    logger.warning("second")
    assert [line.split(" ", 3)[3] for line in stream.getvalue().splitlines()] == [
        "first", "second"]

"""Access-log lines stay whole when several processes share one log stream
(http_serving.access_log: each ``write()`` carries whole lines, at most PIPE_BUF bytes)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from http_serving.access_log import PIPE_BUF, line_pieces, write_whole_lines

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

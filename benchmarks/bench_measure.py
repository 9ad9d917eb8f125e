"""Measuring for bench.py: a command's wall time and peak RSS, a GET, a wrk run.

It imports nothing of the benchmark's other modules, so the other scripts of
benchmarks/ can use it as well (gateway_figures.py times its GETs with
:func:`timed_get`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MB = 1e6


class BenchError(Exception):
    """A command the benchmark depends on failed."""


@dataclass
class Sample:
    """One run of a command: wall seconds, the child's peak RSS in bytes, and the
    CPU-seconds (user + system) of the command and the descendants it waited for."""

    seconds: float
    rss: int
    cpu: float = 0.0


# Runs a command under a small Python (``-I -S``) that forks, execs and waits for it, and
# writes "<wall seconds> <ru_maxrss KiB> <user + system CPU seconds>" to argv[1].  Linux
# counts in a child's ru_maxrss the memory of the process it was forked from as it was at
# exec, so the command must be forked from this ~9 MB helper, not from the benchmark
# (hundreds of MB).
RSS_HELPER = """\
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{time.perf_counter() - start} {usage.ru_maxrss} "
              f"{usage.ru_utime + usage.ru_stime}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(cmd: Sequence[str], env: dict[str, str], log: Path) -> Sample:
    """Run ``cmd`` to completion (output to ``log``); its wall time and peak RSS.

    The RSS is ``ru_maxrss`` from ``os.wait4`` in :data:`RSS_HELPER`: the largest
    of the command and the descendants it waited for (floor: the helper's ~9 MB).

    Raises:
        BenchError: the command failed (the message holds the tail of its log).
    """
    figures = log.with_suffix(".rusage")
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", RSS_HELPER, str(figures),
                               *cmd], stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env=env, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise BenchError(f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n{tail}")
    seconds, maxrss_kib, cpu = figures.read_text().split()
    return Sample(float(seconds), int(maxrss_kib) * 1024, float(cpu))


def cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds a running process and its running children (the
    workers of ``nixshard serve --workers N``, recursively) have used so far
    (/proc/PID/stat, /proc/PID/task/*/children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total + sum(cpu_seconds(child) for child in children(pid))


def children(pid: int) -> list[int]:
    """The pids of a running process's children (empty once it has ended)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids += [int(c) for c in task.read_text().split()]
        except FileNotFoundError:
            continue
    return kids


def vm_hwm(pid: int) -> int:
    """Peak resident set (VmHWM) of a running process, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmHWM for pid {pid}")


def timed_get(url: str) -> tuple[float, int]:
    """Seconds and body bytes of one full GET (curl when present, else httpx streaming).

    Raises:
        BenchError: the answer was not 200.
    """
    if shutil.which("curl"):
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                              "%{http_code} %{time_total} %{size_download}", url],
                             capture_output=True, text=True, check=False).stdout.split()
        if len(out) != 3 or out[0] != "200":
            raise BenchError(f"GET {url}: {out}")
        return float(out[1]), int(out[2])
    import httpx

    size = 0
    start = time.perf_counter()
    with httpx.stream("GET", url, timeout=300) as resp:
        if resp.status_code != 200:
            raise BenchError(f"GET {url}: {resp.status_code}")
        for piece in resp.iter_raw(1 << 20):
            size += len(piece)
    return time.perf_counter() - start, size


def narinfo_fields(base_url: str, store_path: str) -> dict[str, str]:
    """The ``Key: value`` fields of the narinfo of ``store_path`` at ``base_url``."""
    import httpx

    url = f"{base_url}/{Path(store_path).name[:32]}.narinfo"
    resp = httpx.get(url, timeout=60)
    if resp.status_code != 200:
        raise BenchError(f"GET {url}: {resp.status_code}")
    fields = {}
    for line in resp.text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields[key] = value
    return fields


def compressed_size(base_url: str, store_path: str) -> int:
    """Bytes of the path's ``.nar.zst`` at ``base_url``: FileSize, else HEAD Content-Length."""
    import httpx

    fields = narinfo_fields(base_url, store_path)
    if "FileSize" in fields:
        return int(fields["FileSize"])
    resp = httpx.head(f"{base_url}/{fields['URL']}", timeout=60)
    return int(resp.headers["content-length"])


@dataclass
class WrkResult:
    """One wrk run: requests/s, requests sent, non-2xx/3xx answers, socket errors."""

    rps: float
    requests: int
    non_2xx: int
    errors: str


def run_wrk(url: str, seconds: int, script: Path | None, threads: int = 1,
            connections: int = 32) -> WrkResult:
    """``wrk -tT -cC -dS`` on ``url`` (``script``: a Lua file choosing the paths)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
           *(["-s", str(script)] if script else []), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:(.*)", out)
    if not rps or not total:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    return WrkResult(float(rps.group(1)), int(total.group(1)), int(non.group(1)) if non else 0,
                     errors.group(1).strip() if errors else "none")

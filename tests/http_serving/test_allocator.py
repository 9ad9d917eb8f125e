"""keep_freed_memory: freed buffers are reused instead of faulted in again (glibc)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

ROUND = """
import resource, sys
from http_serving.allocator import keep_freed_memory
tuned = sys.argv[1] == "tuned"
if tuned:
    assert keep_freed_memory()
def round_():
    bufs = [bytearray(1 << 20) for _ in range(32)]
    for b in bufs:
        b[::4096] = b"x" * len(b[::4096])
    return bufs
bufs = round_()
del bufs
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
bufs = round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def second_round_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", ROUND, mode], capture_output=True, text=True,
                         check=True)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_second_round_of_buffers_reuses_the_first_rounds_pages() -> None:
    untuned, tuned = second_round_faults("plain"), second_round_faults("tuned")
    pages = 32 * 256  # 32 buffers of 1 MiB, 4 KiB pages
    assert untuned > pages // 2, "glibc gave the freed buffers back (the default)"
    assert tuned < pages // 10, f"{tuned} faults: the freed buffers were not kept"

"""Keep freed buffers in a server process instead of giving them back to the kernel.

glibc's malloc serves allocations above ``M_MMAP_THRESHOLD`` (128 KiB at
first, raised dynamically) with a fresh ``mmap`` and returns them with
``munmap`` on free, and it trims the heap top past ``M_TRIM_THRESHOLD``.  A
server that builds a few hundred KiB per node answer or response piece then
takes a page fault for every 4 KiB page of every such buffer, again and
again: on a cold NAR GET that was about 14,000 faults and 0.6 CPU-seconds per
GB of NAR (``/proc`` minflt and system time of the gateway; see
``benchmarks/results.md``).  Fixing both thresholds keeps those pages in the
process for the next buffer.  The cost is memory: up to ``trim_threshold``
bytes freed at the heap top may stay resident (the servers bound what they
hold at once, so this is the high-water mark of their buffers, not growth).

Thresholds are glibc's (``mallopt(3)``); on another C library nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("nixshard.http")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Bytes; glibc's largest allowed value on 64-bit (``HEAP_MAX_SIZE / 2``)."""
TRIM_THRESHOLD = 128 << 20
"""Bytes freed at the top of the heap before it is given back."""


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD,
                      trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Set glibc's mmap and trim thresholds (bytes) for this process.

    Returns:
        True when both were set; False on a C library without ``mallopt`` or
        when it refused a value (logged once, nothing else changes).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and \
        bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    if not done:
        log.info("mallopt refused the mmap/trim thresholds; the allocator keeps its defaults")
    return done

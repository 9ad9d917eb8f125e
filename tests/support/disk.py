"""Full disks, for real: a small tmpfs, and filling a filesystem up.

Mounting needs root: without it a test is skipped on a laptop and fails in CI
(``CI=true``, see ``tests/conftest.py``), so CI never passes a full-disk test it
did not run.  A full disk is tested for real, never pretended.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import IN_CI


@contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A real tmpfs of ``size`` bytes mounted at ``path`` (created), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        why = f"cannot mount a tmpfs at {path} (needs root): {proc.stderr.strip()}"
        if IN_CI:
            pytest.fail(why + "; CI=true: refusing to skip")
        pytest.skip(why)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False, capture_output=True)


def fill_up(directory: Path, leave: int = 0) -> Path:
    """Write ``directory/ballast`` until its filesystem has at most ``leave`` bytes free
    (statvfs; 0: to the last byte); returns the ballast file."""
    ballast = directory / "ballast"
    with open(ballast, "ab") as f:
        while True:
            stats = os.statvfs(directory)
            free = stats.f_bavail * stats.f_frsize
            if free <= leave:
                break
            try:
                f.write(bytes(min(free - leave, 1 << 20)))
                f.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return ballast

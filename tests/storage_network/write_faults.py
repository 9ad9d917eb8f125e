"""Helpers of the write-path tests: where shards landed, real full disks, stopped nodes.

``full_disk(path, size)`` mounts a real tmpfs of ``size`` bytes at ``path``
(root only); without root the test is skipped, except in CI (``CI=true``,
see ``tests/conftest.py``) where it fails, so CI never passes a full-disk
test it did not run.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork, ManagedProcess
from storage_network.wire.manifest import Manifest
from storage_network.wire.stripe import shard_id
from tests.conftest import IN_CI


def shard_holders(local: LocalNetwork, manifest: Manifest) -> list[dict[int, set[str]]]:
    """Per chunk of ``manifest``: shard index -> ids of the nodes whose data directory
    holds that shard file (read from disk, so stopped and dead nodes count too)."""
    out: list[dict[int, set[str]]] = []
    for ref in manifest.chunks:
        found: dict[int, set[str]] = defaultdict(set)
        for number in range(1, len(local.nodes) + 1):
            for index in range(manifest.n):
                sid = shard_id(ref.root, index)
                if (local.node_dir(number) / "shards" / sid[:2] / sid).is_file():
                    found[index].add(f"node-{number}")
        out.append(dict(found))
    return out


def nodes_of(holders: dict[int, set[str]]) -> list[str]:
    """Every node id holding a shard of one stripe, once per shard it holds."""
    return [node for nodes in holders.values() for node in nodes]


def need_root_for(what: str) -> None:
    """Skip a test that needs root (a mount), or fail it under ``CI=true``."""
    if os.geteuid() == 0:
        return
    message = f"{what} needs root (it mounts a real tmpfs)"
    if IN_CI:
        pytest.fail(message + "; CI=true: refusing to skip")
    pytest.skip(message)


@contextmanager
def full_disk(path: Path, size: int) -> Iterator[Path]:
    """A real tmpfs of ``size`` bytes mounted at ``path`` (created), unmounted afterwards."""
    need_root_for("a full-disk test")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(path: Path) -> None:
    """Fill the filesystem of ``path`` to the last byte (a file ``filler`` there)."""
    with open(path / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass


@contextmanager
def stopped(proc: ManagedProcess) -> Iterator[None]:
    """SIGSTOP ``proc`` (it accepts connections but answers nothing), SIGCONT afterwards."""
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.proc.send_signal(signal.SIGCONT)

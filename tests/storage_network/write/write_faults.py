"""Helpers of the write-path tests: where shards landed, stopped nodes.

Full disks are real tmpfs mounts: :mod:`tests.support.disk`.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from nixshard.localnet import LocalNetwork, ManagedProcess
from storage_network.wire.manifest import Manifest
from storage_network.wire.stripe import shard_id


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


@contextmanager
def stopped(proc: ManagedProcess) -> Iterator[None]:
    """SIGSTOP ``proc`` (it accepts connections but answers nothing), SIGCONT afterwards."""
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.proc.send_signal(signal.SIGCONT)

"""A test network whose nodes enforce a publisher quota: nodes restarted with a network
file holding ``[quotas]`` (as operators run them), and reading what they charge."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from nixshard.localnet import LocalNetwork
from storage_network.config import write_network
from storage_network.wire.write_auth import Publisher
from tests.support.network import running_network


def enforce_quotas(local: LocalNetwork, quotas: dict[str, int]) -> None:
    """Write ``quotas`` into ``local``'s network file and restart every node on it
    (``--network``), so each node enforces them."""
    assert local.network is not None
    local.network = dataclasses.replace(local.network, quotas=dict(quotas))
    write_network(local.network, local.network_file)
    for number in range(1, len(local.nodes) + 1):
        local.restart_node(number, extra=["--network", str(local.network_file)])


@contextmanager
def quota_network(root: Path, publisher: Publisher, quota: int) -> Iterator[LocalNetwork]:
    """A 6-node network (k=4, m=2, small chunks) whose nodes give ``publisher`` a quota
    of ``quota`` bytes each."""
    with running_network(root, publisher=publisher) as local:
        enforce_quotas(local, {publisher.name: quota})
        yield local


def node_usage(local: LocalNetwork, node_id: str) -> dict[str, int]:
    """What node ``node_id`` charges each publisher (its ``/healthz`` ``usage``)."""
    doc = httpx.get(f"{local.node(node_id).url}/healthz", timeout=10).json()
    usage = doc["usage"]
    assert isinstance(usage, dict)
    return {str(k): int(v) for k, v in usage.items()}

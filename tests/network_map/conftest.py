"""Real node processes on 127.0.0.1 that keep and pass on network maps."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from nixshard.localnet import NodeProcess, free_port, start_all, stop_all
from storage_network.network_map import Bootstrap, SignedMap, parse_signed_map
from storage_network.wire.write_auth import Publisher
from storage_node.identity import NodeIdentity

from .maps import first_epoch, maintainers, node_entries, sign

WAIT_SECONDS = 30.0
"""Upper bound of a wait for gossip (a failure after it, never a timing assertion)."""


@dataclass
class Cluster:
    """Nodes of one map, its maintainers and its epoch 1 (signed by maintainers 1 and 2)."""

    root: Path
    keys: list[Publisher]
    identities: list[NodeIdentity]
    epoch1: SignedMap
    nodes: list[NodeProcess] = field(default_factory=list)

    @property
    def bootstrap(self) -> Bootstrap:
        """The bootstrap of epoch 1 (its maintainers, threshold 2, every node URL)."""
        return Bootstrap(tuple(k.public for k in self.keys), 2,
                         tuple(n.url for n in self.epoch1.document.nodes), "test bootstrap")

    def write(self, name: str, signed: SignedMap) -> Path:
        """``signed`` as a file under the cluster's root."""
        path = self.root / name
        path.write_bytes(signed.to_bytes())
        return path

    def node(self, index: int, map_file: Path | None, *more: str,
             gossip: float = 0.3) -> NodeProcess:
        """Node ``index`` of the map (not started), with its key and ``--map map_file``."""
        identity = self.identities[index]
        key = self.root / f"{identity.node_id}.key"
        key.write_text(identity.secret_text() + "\n")
        url = self.epoch1.document.nodes[index].url
        args = ["--key", str(key), "--gossip-seconds", str(gossip), *more]
        if map_file is not None:
            args += ["--map", str(map_file)]
        return NodeProcess(self.root / identity.node_id, [], identity.node_id,
                           port=int(url.rsplit(":", 1)[1]), extra_args=args)


def served_epoch(url: str, epoch: int | None = None) -> int | None:
    """The epoch a node serves (newest, or ``epoch``), None on 404."""
    resp = httpx.get(f"{url}/map" + ("" if epoch is None else f"/{epoch}"))
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    return parse_signed_map(resp.content).epoch


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until true; fail after :data:`WAIT_SECONDS`."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_SECONDS} s: {what}")
        time.sleep(0.1)


def put(url: str, signed: SignedMap | bytes) -> httpx.Response:
    """PUT a signed map (or raw bytes) to a node."""
    body = signed if isinstance(signed, bytes) else signed.to_bytes()
    return httpx.put(f"{url}/map", content=body, timeout=30)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three node keys and ports (four ports: the 4th URL is not in the map), three
    maintainers, epoch 1 signed by two of them.  Tests start the nodes they want with
    :meth:`Cluster.node` and append them to ``cluster.nodes`` (stopped at the end)."""
    keys = maintainers("maint", 3)
    identities, nodes = node_entries([f"http://127.0.0.1:{free_port()}" for _ in range(3)])
    epoch1 = sign(first_epoch(nodes, keys), keys[0], keys[1])
    result = Cluster(tmp_path, keys, identities, epoch1)
    try:
        yield result
    finally:
        stop_all(result.nodes)


@pytest.fixture
def started(cluster: Cluster) -> Callable[[Sequence[NodeProcess]], list[NodeProcess]]:
    """Start nodes and wait for each; they are stopped with the cluster."""

    def start(nodes: Sequence[NodeProcess]) -> list[NodeProcess]:
        cluster.nodes += nodes
        start_all(nodes)
        return list(nodes)

    return start

"""A keyed network run from a signed network map, for the live epoch change test.

Nodes are real ``nixshard node --key K --map epoch1.json`` processes on
127.0.0.1; their ids derive from their keys (docs/network-map.md, "Node
identity").  Maps are built with tests/network_map/maps.py (``next_epoch``,
``sign``); this module adds what an end-to-end run needs: maintainers with
secret-key files (repair signs with one), the Nix key as the map's publisher,
a spare node outside epoch 1, and readers of the nodes' shard directories.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from nixshard.localnet import NodeProcess, free_port, new_publisher
from storage_network.config import NodeInfo
from storage_network.network_map import Bootstrap, MapDocument, SignedMap
from storage_network.wire.write_auth import Publisher, PublisherKey
from storage_node.identity import NodeIdentity
from tests.network_map.maps import sign
from tests.support.shards import shard_files

WAIT_SECONDS = 60.0
"""Upper bound of every wait of the epoch test (a failure after it, never a timing
assertion)."""
OPERATORS = ("op-a", "op-b", "op-c")
"""Node ``i`` (from 1) is run by ``OPERATORS[(i - 1) % 3]``."""


def wait_until(check: Callable[[], bool], what: str, seconds: float = WAIT_SECONDS) -> float:
    """Poll ``check`` every 0.1 s until true; returns the seconds it took.

    Raises:
        pytest.fail.Exception: still false after ``seconds`` (the message names ``what``).
    """
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


@dataclass
class Maintainer:
    """A maintainer's key and its secret-key file (Nix key-file form, mode 0600)."""

    key: Publisher
    secret_file: Path


@dataclass
class EpochNetwork:
    """Node keys and ports, maintainers and epoch 1 of a network run from its map.

    Attributes:
        root: where key files, maps, node data (``root/<node id>``) and logs live.
        maintainers: three; epoch 1 is signed by the first two, threshold 2.
        identities: one key per node, node 1 first; the last ``spare`` are not in
            epoch 1 (they join later).
        urls: each node's base URL (port chosen now).
        epoch1: the signed epoch 1.
        nodes: started nodes, by number (from 1).
    """

    root: Path
    maintainers: list[Maintainer]
    identities: list[NodeIdentity]
    urls: list[str]
    epoch1: SignedMap
    nodes: dict[int, NodeProcess] = field(default_factory=dict)

    def entry(self, number: int, state: str = "active") -> NodeInfo:
        """The map's entry of node ``number`` (from 1)."""
        return node_entry(self.identities, self.urls, number, state)

    def node_id(self, number: int) -> str:
        """The id of node ``number``."""
        return self.identities[number - 1].node_id

    def number(self, node_id: str) -> int:
        """The number of the node with id ``node_id``."""
        return [i.node_id for i in self.identities].index(node_id) + 1

    def data_dir(self, number: int) -> Path:
        """The data directory of node ``number``."""
        return self.root / self.node_id(number)

    def write(self, name: str, signed: SignedMap) -> Path:
        """``signed`` as the file ``root/name``."""
        path = self.root / name
        path.write_bytes(signed.to_bytes())
        return path

    def bootstrap(self) -> Bootstrap:
        """The bootstrap of epoch 1: its maintainers, threshold 2, its node URLs."""
        return Bootstrap(tuple(m.key.public for m in self.maintainers), 2,
                         tuple(n.url for n in self.epoch1.document.nodes), "epoch test")

    def start(self, numbers: Iterable[int], map_file: Path, gossip: float = 0.5) -> None:
        """Start nodes ``numbers`` with their keys, ``--map map_file`` and no
        ``--network`` (their publishers follow the map), and wait for each."""
        started = []
        for number in numbers:
            identity = self.identities[number - 1]
            key = self.root / f"{identity.node_id}.key"
            key.write_text(identity.secret_text() + "\n")
            key.chmod(0o600)
            port = int(self.urls[number - 1].rsplit(":", 1)[1])
            node = NodeProcess(self.data_dir(number), [], identity.node_id, port=port,
                               extra_args=["--key", str(key), "--map", str(map_file),
                                           "--gossip-seconds", str(gossip)])
            self.nodes[number] = node
            started.append(node)
        for node in started:
            node.start()
        for node in started:
            node.wait_ready()

    def records(self, number: int) -> set[str]:
        """Record keys node ``number`` holds on disk (its ``records/<record key>`` files)."""
        folder = self.data_dir(number) / "records"
        return {p.name for p in folder.iterdir() if not p.name.startswith(".")}

    def shards(self, number: int) -> dict[str, set[int]]:
        """Shard indices node ``number`` holds on disk, by stripe root (hex): read from
        its ``shards/<2 hex>/<root hex>.<index>`` files."""
        held: dict[str, set[int]] = {}
        for path in shard_files(self.data_dir(number)):
            root, dot, index = path.name.partition(".")
            if dot and index.isdigit():
                held.setdefault(root, set()).add(int(index))
        return held


def node_entry(identities: list[NodeIdentity], urls: list[str], number: int,
               state: str = "active") -> NodeInfo:
    """The map's entry of node ``number`` (from 1): its key's id, its URL, operator
    ``OPERATORS[(number - 1) % 3]``, ``state``."""
    identity = identities[number - 1]
    return NodeInfo(identity.node_id, urls[number - 1],
                    operator=OPERATORS[(number - 1) % len(OPERATORS)], state=state,
                    public_key=identity.public_key)


def new_network(root: Path, publisher: PublisherKey, count: int, spare: int, k: int,
                m: int) -> EpochNetwork:
    """Keys for ``count + spare`` nodes, three maintainers, and epoch 1 over the first
    ``count`` nodes (``k``-of-``k+m``, ``placement = "groups"`` over three operators,
    ``publisher`` the only publisher, 1 TB quota), signed by maintainers 1 and 2."""
    maintainers = []
    for i in (1, 2, 3):
        key, secret = new_publisher(f"maint-{i}")
        path = root / f"maint-{i}.secret"
        path.write_text(secret + "\n")
        path.chmod(0o600)
        maintainers.append(Maintainer(key, path))
    identities = [NodeIdentity(SigningKey.generate()) for _ in range(count + spare)]
    urls = [f"http://127.0.0.1:{free_port()}" for _ in identities]
    doc = MapDocument(epoch=1, previous="",
                      nodes=tuple(node_entry(identities, urls, i) for i in range(1, count + 1)),
                      k=k, m=m, publishers=(publisher,), quotas={publisher.name: 10**12},
                      maintainers=tuple(mt.key.public for mt in maintainers), threshold=2,
                      placement="groups").validate()
    epoch1 = sign(doc, maintainers[0].key, maintainers[1].key)
    return EpochNetwork(root, maintainers, identities, urls, epoch1)

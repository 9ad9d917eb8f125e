"""The test network: storage-node processes on 127.0.0.1, 4-of-6 with small chunks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.config import ChunkingParams
from storage_network.wire.write_auth import Publisher

NODES, K, M = 6, 4, 2
SMALL_CHUNKS = ChunkingParams(min_size=4096, avg_size=16384, max_size=65536)
"""Chunks of 4-64 KiB: a few hundred kB of test data make many chunks."""


def running_network(root: Path, count: int = NODES, publisher: Publisher | None = None,
                    node_env: Mapping[str, str] | None = None, *,
                    private: bool = False) -> LocalNetwork:
    """``count`` started nodes (k=4, m=2, small chunks) under ``root``, with their network
    file; use it as a context manager (or ``close()`` it) to stop them.

    Args:
        publisher: the key the nodes accept (default: a fresh ``sn-test-1``).
        node_env: environment entries for every node.
        private: a private network (its cache secret in ``keyring``).
    """
    local = LocalNetwork(root, publisher or new_publisher("sn-test-1")[0])
    try:
        local.start_nodes(count, K, M, SMALL_CHUNKS, node_env=node_env, private=private)
    except BaseException:
        local.close()  # the nodes started before the failure
        raise
    return local


@contextmanager
def keyed_network(root: Path, name: str, *, private: bool = False,
                  nodes: int = NODES) -> Iterator[tuple[LocalNetwork, Path]]:
    """A :func:`running_network` of ``nodes`` nodes under ``root / "net"`` whose
    publisher is a fresh key ``name``, and that key's secret-key file
    (``root / "secret.key"``, Nix key-file format: for ``--signing-key``)."""
    publisher, secret_text = new_publisher(name)
    key_file = root / "secret.key"
    key_file.write_text(secret_text)
    with running_network(root / "net", nodes, publisher, private=private) as local:
        yield local, key_file

"""A local network on 127.0.0.1: nodes, a network file and gateways, for tests, the demo
and benchmarks.

Every program runs as a real process (``python -m nixshard ...``) with its
output in a log file, and is stopped when the :class:`LocalNetwork` closes.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nix_formats.keys import SecretKey
from storage_network import Publisher
from storage_network.config import ChunkingParams, Network, init_network, write_network
from uploader.closure import nix_env

from .ports import free_port
from .process import ManagedProcess, NodeProcess, start_nodes, stop_all


@dataclass
class LocalNetwork:
    """Nodes, a network file and (optionally) gateways under ``root``.

    Node ``i`` (from 1) is ``node-i``: data in ``root/node-i``, log ``root/node-i.log``.
    """

    root: Path
    publisher: Publisher
    nodes: list[NodeProcess] = field(default_factory=list)
    daemon: ManagedProcess | None = None
    gateways: list[ManagedProcess] = field(default_factory=list)
    network: Network | None = None

    @property
    def network_file(self) -> Path:
        """Path of the network file."""
        return self.root / "network.toml"

    def node_dir(self, number: int) -> Path:
        """Data directory of node ``number`` (1-based, as in ``node-<number>``)."""
        return self.root / f"node-{number}"

    def node(self, node_id: str) -> NodeProcess:
        """The process of node ``node_id``."""
        (proc,) = [p for p in self.nodes if p.node_id == node_id]
        return proc

    def _node_process(self, number: int, port: int | None, extra: Sequence[str],
                      env: Mapping[str, str] | None) -> NodeProcess:
        return NodeProcess(self.node_dir(number), [self.publisher.public.text()],
                           f"node-{number}", port, extra, env)

    def add_node(self, extra: Sequence[str] = (), env: Mapping[str, str] | None = None
                 ) -> NodeProcess:
        """Start one more node (``node-<count+1>``); the network file is not changed."""
        node = self._node_process(len(self.nodes) + 1, None, extra, env)
        self.nodes.append(node)
        node.start().wait_ready()
        return node

    def restart_node(self, number: int, extra: Sequence[str] = (),
                     env: Mapping[str, str] | None = None, wipe: bool = False) -> None:
        """Stop node ``number`` and start it again on the same port and data.

        Args:
            extra: replaces the node's extra command-line arguments.
            env: replaces its extra environment entries.
            wipe: delete its data directory first (a node that lost its disk).
        """
        old = self.nodes[number - 1]
        old.stop()
        if wipe:
            shutil.rmtree(self.node_dir(number), ignore_errors=True)
        node = self._node_process(number, old.port, extra, env)
        self.nodes[number - 1] = node
        node.start().wait_ready()

    def start_nodes(self, count: int, k: int, m: int,
                    chunking: ChunkingParams | None = None,
                    node_args: Mapping[int, Sequence[str]] | None = None,
                    node_env: Mapping[str, str] | None = None) -> Network:
        """Start ``count`` nodes, write the network file, return the network.

        Args:
            node_args: extra command-line arguments by node number (1-based).
            node_env: environment entries added for every node.
        """
        self.nodes += start_nodes(self.root, count, [self.publisher.public.text()],
                                  node_args=node_args, env=node_env)
        params = {"chunking": chunking} if chunking else {}
        self.network = init_network([n.url for n in self.nodes], k, m,
                                    [self.publisher.public], **params)
        write_network(self.network, self.network_file)
        return self.network

    def start_daemon(self, port: int | None = None, extra: Sequence[str] = (),
                     env: Mapping[str, str] | None = None) -> str:
        """Start ``nixshard serve`` on the network file as :attr:`daemon`; returns its base URL."""
        self.daemon = self.start_gateway("serve", port, extra, env)
        return self.daemon.url

    def start_gateway(self, name: str, port: int | None = None, extra: Sequence[str] = (),
                      env: Mapping[str, str] | None = None) -> ManagedProcess:
        """Start one more ``nixshard serve`` (log ``<name>.log``, cache dir ``<name>-cache``
        unless ``extra`` names one); it is stopped on :meth:`close`."""
        port = port or free_port()
        cache = [] if "--cache-dir" in extra else ["--cache-dir", str(self.root / f"{name}-cache")]
        gateway = ManagedProcess(
            name, ["serve", "--network", str(self.network_file),
                   "--listen", f"127.0.0.1:{port}", *cache, *extra],
            f"http://127.0.0.1:{port}", self.root / f"{name}.log", env=dict(env or {}))
        self.gateways.append(gateway)
        gateway.start().wait_ready()
        return gateway

    def close(self) -> None:
        """Stop every process (SIGTERM to all, then wait for each)."""
        stop_all([*self.nodes, *self.gateways])

    def __enter__(self) -> LocalNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_publisher(name: str = "nixshard-demo-1") -> tuple[Publisher, str]:
    """A fresh ed25519 key: the publisher and its secret-key text (Nix key-file format)."""
    key = SecretKey.generate(name)
    return Publisher(name, key.signing_key), key.text()


def env_with_nix_config() -> dict[str, str]:
    """os.environ plus the NIX_CONFIG for root without a daemon, and no default substituter."""
    return nix_env("sandbox = false", "build-users-group =", "substituters =")

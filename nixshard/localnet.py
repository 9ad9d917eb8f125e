"""A local network on 127.0.0.1: node processes and a cache daemon, for the demo and tests.

Every program runs as a real process (``python -m nixshard ...``) with its
output in a log file, and is stopped when the :class:`LocalNetwork` closes.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from nix_formats.keys import SecretKey
from storage_network import Publisher
from storage_network.config import ChunkingParams, Network, init_network, write_network
from uploader.closure import nix_env


class LocalNetworkError(Exception):
    """A local process did not come up (the message holds the tail of its log)."""


_HANDED_OUT: set[int] = set()
_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (32768 when unknown)."""
    try:
        return int(_PORT_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Chosen at random below the kernel's ephemeral range
    (``ip_local_port_range``), so that no outgoing connection can take it
    between now and the moment its server binds it (a port from ``bind(0)``
    is an ephemeral one), and never the same port twice in one process.
    """
    high = _ephemeral_low()
    low = max(1024, high - 20000)
    pick = random.SystemRandom()
    for _ in range(200):
        port = pick.randrange(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # a crowded range: any free port
        s.bind(("127.0.0.1", 0))
        found: int = s.getsockname()[1]
        return found


@dataclass
class ManagedProcess:
    """One ``python -m nixshard`` process with its URL and log file."""

    name: str
    args: list[str]
    url: str
    log_path: Path
    health_path: str
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        """Start the process (does not wait for it; see :meth:`wait_ready`).

        ``env`` entries are added to this process's environment.
        """
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "nixshard", *self.args],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **self.env})
        log.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until ``health_path`` answers 200 (seconds).

        Raises:
            LocalNetworkError: the process exited or never answered.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + self.health_path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise LocalNetworkError(f"{self.name} did not start:\n{tail}")

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.running:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class LocalNetwork:
    """Nodes, a network file and (optionally) a cache daemon under ``root``."""

    root: Path
    publisher: Publisher
    nodes: list[ManagedProcess] = field(default_factory=list)
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

    def _node_process(self, number: int, port: int, extra: Sequence[str],
                      env: Mapping[str, str]) -> ManagedProcess:
        data = self.node_dir(number)
        data.mkdir(parents=True, exist_ok=True)
        return ManagedProcess(
            f"node-{number}",
            ["node", "--data", str(data), "--listen", f"127.0.0.1:{port}",
             "--node-id", f"node-{number}", "--accept-publisher", self.publisher.public.text(),
             *extra],
            f"http://127.0.0.1:{port}", self.root / f"node-{number}.log", "/healthz",
            env=dict(env))

    def add_node(self, extra: Sequence[str] = (), env: Mapping[str, str] | None = None
                 ) -> ManagedProcess:
        """Start one more node (``node-<count+1>``); the network file is not changed."""
        node = self._node_process(len(self.nodes) + 1, free_port(), extra, env or {})
        self.nodes.append(node)
        node.start()
        node.wait_ready()
        return node

    def restart_node(self, number: int, extra: Sequence[str] = (),
                     env: Mapping[str, str] | None = None, wipe: bool = False) -> None:
        """Stop node ``number`` and start it again on the same port and data.

        Args:
            extra: replaces the node's extra command-line arguments.
            wipe: delete its data directory first (a node that lost its disk).
        """
        old = self.nodes[number - 1]
        old.stop()
        if wipe:
            shutil.rmtree(self.node_dir(number), ignore_errors=True)
        port = int(old.url.rsplit(":", 1)[1])
        node = self._node_process(number, port, extra, env or {})
        self.nodes[number - 1] = node
        node.start()
        node.wait_ready()

    def start_nodes(self, count: int, k: int, m: int,
                    chunking: ChunkingParams | None = None,
                    node_args: Mapping[int, Sequence[str]] | None = None,
                    node_env: Mapping[str, str] | None = None) -> Network:
        """Start ``count`` nodes, write the network file, return the network.

        Args:
            node_args: extra command-line arguments by node number (1-based).
            node_env: environment entries added for every node.
        """
        args = node_args or {}
        for i in range(1, count + 1):
            self.nodes.append(self._node_process(i, free_port(), args.get(i, ()),
                                                 node_env or {}))
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready()
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
            f"http://127.0.0.1:{port}", self.root / f"{name}.log", "/healthz", env=dict(env or {}))
        self.gateways.append(gateway)
        gateway.start()
        gateway.wait_ready()
        return gateway

    def close(self) -> None:
        """Stop every process."""
        for proc in [*self.nodes, *self.gateways]:
            proc.stop()

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

"""A local network on 127.0.0.1: node processes and a cache daemon, for the demo and tests.

Every program runs as a real process (``python -m nixshard ...``) with its
output in a log file, and is stopped when the :class:`LocalNetwork` closes.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from nix_formats.keys import SecretKey
from storage_network.auth import Publisher
from storage_network.network_file import ChunkingParams, Network, init_network, write_network
from uploader.closure import nix_env


class LocalNetworkError(Exception):
    """A local process did not come up (the message holds the tail of its log)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ManagedProcess:
    """One ``python -m nixshard`` process with its URL and log file."""

    name: str
    args: list[str]
    url: str
    log_path: Path
    health_path: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process (does not wait for it; see :meth:`wait_ready`)."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "nixshard", *self.args],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
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
    network: Network | None = None

    @property
    def network_file(self) -> Path:
        """Path of the network file."""
        return self.root / "network.toml"

    def start_nodes(self, count: int, k: int, m: int,
                    chunking: ChunkingParams | None = None) -> Network:
        """Start ``count`` nodes, write the network file, return the network."""
        key = self.publisher.public.text()
        for i in range(1, count + 1):
            data = self.root / f"node-{i}"
            data.mkdir(parents=True, exist_ok=True)
            port = free_port()
            self.nodes.append(ManagedProcess(
                f"node-{i}", ["node", "--data", str(data), "--listen", f"127.0.0.1:{port}",
                              "--node-id", f"node-{i}", "--accept-publisher", key],
                f"http://127.0.0.1:{port}", self.root / f"node-{i}.log", "/healthz"))
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready()
        params = {"chunking": chunking} if chunking else {}
        self.network = init_network([n.url for n in self.nodes], k, m,
                                    [self.publisher.public], **params)
        write_network(self.network, self.network_file)
        return self.network

    def start_daemon(self, port: int | None = None, extra: tuple[str, ...] = ()) -> str:
        """Start ``nixshard serve`` on the network file; returns its base URL."""
        port = port or free_port()
        self.daemon = ManagedProcess(
            "serve", ["serve", "--network", str(self.network_file),
                      "--listen", f"127.0.0.1:{port}", *extra],
            f"http://127.0.0.1:{port}", self.root / "serve.log", "/nix-cache-info")
        self.daemon.start()
        self.daemon.wait_ready()
        return self.daemon.url

    def close(self) -> None:
        """Stop every process."""
        for proc in [*self.nodes, *([self.daemon] if self.daemon else [])]:
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

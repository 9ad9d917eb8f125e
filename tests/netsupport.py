"""Test helpers shared by every test package: real storage-node processes and keys.

    from tests.netsupport import NodeProcess, make_publisher, start_nodes

    publisher, public_text = make_publisher()
    nodes = start_nodes(tmp_path, 6, [public_text])   # ids node-1 .. node-6
    try:
        ...  # nodes[0].url, nodes[0].data_dir, nodes[0].log_path
    finally:
        stop_nodes(nodes)

Node ids are ``node-1`` ... ``node-N`` in start order, the ids
:func:`storage_network.config.init_network` gives to the URLs in the
same order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

import httpx
from prometheus_client.parser import text_string_to_metric_families

from nixshard.localnet import free_port, new_publisher
from storage_network.wire.write_auth import Publisher, parse_publisher_secret, sha256, sign_write

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 20.0


class NodeStartError(RuntimeError):
    """A node process exited or did not answer ``/healthz`` in time (message has its log tail)."""


def make_publisher(name: str = "test-publisher-1") -> tuple[Publisher, str]:
    """A fresh publisher key.

    Returns:
        ``(publisher, public_key_text)``: the secret key (parsed from the
        ``name:base64(seed + public key)`` text, as a key file holds it) and
        the ``name:base64`` public key that nodes accept.
    """
    _, secret_text = new_publisher(name)
    publisher = parse_publisher_secret(secret_text)
    return publisher, publisher.public.text()


def signed_headers(publisher: Publisher, method: str, path: str, body: bytes,
                   now: float | None = None, node_id: str = "node-1") -> dict[str, str]:
    """The headers that authorise ``method path`` with ``body`` on node ``node_id``
    (``now`` in Unix seconds; a fresh nonce each call)."""
    return sign_write(publisher, node_id, method, path, sha256(body), now=now)


class NodeProcess:
    """A real ``python -m storage_node`` process on 127.0.0.1.

    Attributes:
        url: ``http://127.0.0.1:PORT`` (no trailing slash).
        node_id, data_dir, port.
        log_path: the node's stdout+stderr, ``<data_dir's parent>/<data_dir name>.log``
            (appended to across restarts).

    :meth:`start` spawns the process without waiting; :meth:`wait_ready`
    waits for ``/healthz``.  As a context manager it starts (and waits) on
    entry and stops on exit.
    """

    def __init__(self, data_dir: Path, accept_keys: Sequence[str], node_id: str = "node-1",
                 port: int | None = None, extra_args: Sequence[str] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.accept_keys = list(accept_keys)
        self.node_id = node_id
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The argv that starts this node."""
        argv = [sys.executable, "-m", "storage_node", "--data", str(self.data_dir),
                "--listen", f"127.0.0.1:{self.port}", "--node-id", self.node_id]
        for key in self.accept_keys:
            argv += ["--accept-publisher", key]
        return argv + self.extra_args

    def start(self) -> NodeProcess:
        """Spawn the process (returns at once; see :meth:`wait_ready`)."""
        if self.running:
            return self
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=env)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> NodeProcess:
        """Wait until ``GET /healthz`` answers 200 (``timeout`` in seconds).

        Raises:
            NodeStartError: the process exited, or did not answer in time;
                the message carries the tail of its log.
        """
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    code = None if self.proc is None else self.proc.returncode
                    raise NodeStartError(f"node {self.node_id} exited (code {code}) before "
                                         f"answering /healthz:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise NodeStartError(f"node {self.node_id} did not answer {self.url}/healthz "
                                         f"within {timeout} s:\n{self.log_tail()}")
                time.sleep(0.05)

    def log_text(self) -> str:
        """Everything the node has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the node's log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process and reap it (no clean shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def terminate(self) -> None:
        """Send SIGTERM once (clean shutdown) without waiting; see :meth:`wait`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 10.0) -> None:
        """Wait for the process to exit; SIGKILL it after ``timeout`` seconds."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process and wait for it (SIGKILL after ``timeout`` seconds)."""
        self.terminate()
        self.wait(timeout)

    def restart(self, timeout: float = START_TIMEOUT_SECONDS) -> NodeProcess:
        """Stop (SIGTERM) and start again on the same port and data; wait until ready."""
        self.stop()
        self.proc = None
        return self.start().wait_ready(timeout)

    def __enter__(self) -> NodeProcess:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.kill()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"NodeProcess({self.node_id!r}, {self.url!r}, running={self.running})"


def start_nodes(base_dir: Path, count: int, accept_keys: Sequence[str],
                extra_args: Sequence[str] = ()) -> list[NodeProcess]:
    """Start ``count`` nodes at once and wait for all of them.

    Node i (from 1) is ``node-i`` with data in ``base_dir/node-i`` and its
    log in ``base_dir/node-i.log``.  If any fails to start, all are killed
    and :class:`NodeStartError` is raised.
    """
    nodes = [NodeProcess(Path(base_dir) / f"node-{i}", accept_keys, node_id=f"node-{i}",
                         extra_args=extra_args) for i in range(1, count + 1)]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
    except BaseException:
        for node in nodes:
            node.kill()
        raise
    return nodes


def stop_nodes(nodes: Iterable[NodeProcess]) -> None:
    """SIGTERM every node first, then wait for each (fast teardown)."""
    nodes = list(nodes)
    for node in nodes:
        node.terminate()
    for node in nodes:
        node.wait()


def scrape(url: str, name: str, **labels: str) -> float:
    """The value of sample ``name{labels}`` on ``url``/metrics (0.0 when absent).

    Parsed with prometheus-client's own text-format parser.
    """
    text = httpx.get(url.rstrip("/") + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def peak_rss(pid: int) -> int:
    """Process ``pid``'s peak resident set so far (``VmHWM`` of /proc/<pid>/status), bytes.

    Raises:
        RuntimeError: the status file has no VmHWM line.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")

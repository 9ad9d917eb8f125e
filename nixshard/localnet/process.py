"""Local processes with an HTTP health check: start, wait until ready, stop, inspect.

Every process of a local network (nodes, gateways, and whatever else a test
or benchmark runs beside them) is a :class:`ManagedProcess`: a command run
with its output appended to a log file, ready once ``GET <url><health_path>``
answers 200.  :class:`NodeProcess` is one storage node (``nixshard node``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from storage_node.faults import ENV_VAR

from .ports import free_port

NIXSHARD = (sys.executable, "-m", "nixshard")
"""The command that runs a ``nixshard`` subcommand with this interpreter."""
READY_SECONDS = 30.0
"""How long :meth:`ManagedProcess.wait_ready` waits by default."""
STOP_SECONDS = 10.0
"""How long a stop waits after SIGTERM before SIGKILL (a server's own shutdown takes up
to 10 s: :data:`http_serving.server.SHUTDOWN_TIMEOUT`)."""
FAULT_ENV = {ENV_VAR: "1"}
"""The environment entry without which a node refuses ``--fault`` options (TEST-ONLY)."""


class LocalNetworkError(Exception):
    """A local process exited before it was ready, or never answered (the message holds
    the tail of its log)."""


@dataclass
class ManagedProcess:
    """One local process, its base URL and its log file.

    Attributes:
        name: what messages call it (for a node: its node id).
        args: the arguments after ``program``.
        url: ``http://127.0.0.1:PORT`` or ``https://...`` (no trailing slash).
        log_path: stdout and stderr, appended to across restarts.
        health_path: answers 200 once the process is ready.
        env: entries added to ``os.environ`` (as it is at each start).
        program: the command (default: ``python -m nixshard``).
        cwd: the working directory (default: this process's).
    """

    name: str
    args: list[str]
    url: str
    log_path: Path
    health_path: str = "/healthz"
    env: dict[str, str] = field(default_factory=dict)
    program: tuple[str, ...] = NIXSHARD
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The port of :attr:`url`."""
        return int(self.url.rsplit(":", 1)[1])

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Self:
        """Start the process unless it runs; returns at once (see :meth:`wait_ready`)."""
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*self.program, *self.args], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.cwd, env={**os.environ, **self.env})
        return self

    def wait_ready(self, timeout: float = READY_SECONDS) -> Self:
        """Wait until ``health_path`` answers 200 (``timeout`` in seconds).

        Raises:
            LocalNetworkError: the process exited, or did not answer in time (then it
                is killed); the message carries the tail of its log.
        """
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    code = None if self.proc is None else self.proc.returncode
                    raise LocalNetworkError(f"{self.name} exited (code {code}) before "
                                            f"answering {self.health_path}:\n{self.log_tail()}")
                try:
                    if client.get(self.url + self.health_path).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise LocalNetworkError(f"{self.name} did not answer {self.url}"
                                            f"{self.health_path} within {timeout} s:\n"
                                            f"{self.log_tail()}")
                time.sleep(0.05)

    def log_text(self) -> str:
        """Everything the process has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def child_pids(self) -> list[int]:
        """Pids of the process's children now (a ``serve --workers N`` supervisor's
        workers, ...); empty when it does not run."""
        if not self.running:
            return []
        assert self.proc is not None
        return child_pids(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the process and its children, as a crash of the whole service would
        (systemd kills a unit's whole control group), and reap the process."""
        if self.running:
            assert self.proc is not None
            children = self.child_pids()
            self.proc.send_signal(signal.SIGKILL)
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.proc is not None:
            self.proc.wait()

    def terminate(self) -> None:
        """Send SIGTERM (a clean shutdown) without waiting; see :meth:`wait`."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = STOP_SECONDS) -> None:
        """Wait for the process to exit; SIGKILL it after ``timeout`` seconds."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        self.terminate()
        self.wait(timeout)

    def restart(self, timeout: float = READY_SECONDS) -> Self:
        """Stop (SIGTERM) and start again with the same arguments; wait until ready."""
        self.stop()
        return self.start().wait_ready(timeout)

    def peak_rss(self) -> int:
        """The largest peak resident set so far (``VmHWM`` in /proc) of the process and
        of its children (the workers of ``serve --workers N``: each one's memory
        must stay bounded), bytes.

        Raises:
            LocalNetworkError: not started, or its status has no VmHWM line.
        """
        if self.proc is None:
            raise LocalNetworkError(f"{self.name} was never started")
        peaks = [_peak_rss(Path(f"/proc/{self.proc.pid}/status"))]
        for pid in self.child_pids():
            try:
                peaks.append(_peak_rss(Path(f"/proc/{pid}/status")))
            except (FileNotFoundError, LocalNetworkError):  # gone meanwhile
                pass
        return max(peaks)

    def __enter__(self) -> Self:
        """Start and wait until ready (killed again if it is not)."""
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.kill()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _peak_rss(status: Path) -> int:
    """``VmHWM`` of a ``/proc/PID/status`` file, bytes.

    Raises:
        LocalNetworkError: the file has no VmHWM line.
    """
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise LocalNetworkError(f"no VmHWM in {status}")


def child_pids(pid: int) -> list[int]:
    """Pids of the children of process ``pid`` (from ``/proc/*/stat``), ascending."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        fields = text.rsplit(")", 1)[-1].split()  # after "(comm)": state, ppid, ...
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(stat.parent.name))
    return sorted(children)


class NodeProcess(ManagedProcess):
    """A storage node, ``nixshard node``, on 127.0.0.1.

    Its log is ``<data_dir>.log`` beside its data directory.

    Args:
        data_dir: the node's ``--data``.
        accept_keys: publisher public keys (``name:base64``) it accepts writes from.
        node_id: its ``--node-id``.
        port: default: a :func:`free_port`.
        extra_args: more command-line arguments (``--fault ...`` needs :data:`FAULT_ENV`;
            with ``--tls-cert``/``--tls-key`` the node serves HTTPS and its :attr:`url`
            is ``https://``, checked against the trust store, which honours
            ``SSL_CERT_FILE``).
        env: environment entries added for this node.
    """

    def __init__(self, data_dir: Path, accept_keys: Sequence[str], node_id: str = "node-1",
                 port: int | None = None, extra_args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        port = port or free_port()
        args = ["node", "--data", str(self.data_dir), "--listen", f"127.0.0.1:{port}",
                "--node-id", node_id]
        for key in accept_keys:
            args += ["--accept-publisher", key]
        scheme = "https" if "--tls-cert" in extra_args else "http"
        super().__init__(node_id, [*args, *extra_args], f"{scheme}://127.0.0.1:{port}",
                         self.data_dir.parent / f"{self.data_dir.name}.log", env=dict(env or {}))

    @property
    def node_id(self) -> str:
        """The node's id (its :attr:`name`)."""
        return self.name


def start_all(processes: Iterable[ManagedProcess]) -> None:
    """Start every process, then wait for each; on any failure all are killed.

    Raises:
        LocalNetworkError: one did not come up.
    """
    processes = list(processes)
    try:
        for proc in processes:
            proc.start()
        for proc in processes:
            proc.wait_ready()
    except BaseException:
        for proc in processes:
            proc.kill()
        raise


def stop_all(processes: Iterable[ManagedProcess]) -> None:
    """SIGTERM every process first, then wait for each (a fast teardown)."""
    processes = list(processes)
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.wait()


def start_nodes(base_dir: Path, count: int, accept_keys: Sequence[str],
                extra_args: Sequence[str] = (),
                node_args: Mapping[int, Sequence[str]] | None = None,
                env: Mapping[str, str] | None = None) -> list[NodeProcess]:
    """Start ``count`` nodes at once and wait for all of them (see :func:`start_all`).

    Node i (from 1) is ``node-i`` with data in ``base_dir/node-i`` and its log in
    ``base_dir/node-i.log``: the ids :func:`storage_network.config.init_network`
    gives to their URLs in this order.

    Args:
        extra_args: arguments for every node.
        node_args: more arguments by node number.
        env: environment entries for every node.
    """
    more = node_args or {}
    nodes = [NodeProcess(Path(base_dir) / f"node-{i}", accept_keys, f"node-{i}",
                         extra_args=[*extra_args, *more.get(i, ())], env=env)
             for i in range(1, count + 1)]
    start_all(nodes)
    return nodes

"""Several processes serving one port (``--workers N``): a supervisor and its workers.

The supervisor is the process the command started.  It binds the listening
sockets itself (:func:`bind_group`): one set per worker, every socket with
``SO_REUSEPORT`` on the same address, after a plain bind has shown that no
other program listens there (``SO_REUSEPORT`` alone would let a second
gateway of the same user share the port silently).  Binding in the
supervisor turns a taken port into one error before anything starts, and a
connection that arrives while a worker is still starting waits in that
worker's backlog instead of being refused.  The workers are started with
multiprocessing's ``spawn`` method (fresh interpreters: no event loop,
thread or lock is inherited) and get their sockets; the supervisor then
closes its copies, so a worker that is gone leaves the port's group and the
kernel spreads new connections over the others.

Start-up: each worker sets its app up (its start-up hooks, which clean
shared directories, run then), reports ``ready``, and accepts connections
only after the supervisor's ``go``, sent once every worker is ready: no
worker serves while a sibling still cleans up.  Each then reports
``listening``; the supervisor logs once all do.

Metrics: before starting the workers the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` (:data:`MULTIPROC_ENV`) to a fresh private
directory, which prometheus_client reads when a worker imports it: every
worker's samples go to files there, and a worker's ``/metrics`` sums them
(``prometheus_client.multiprocess.MultiProcessCollector``).  The supervisor
calls ``mark_process_dead`` for each worker that exits and removes the
directory when it exits.

Shutdown: SIGTERM or SIGINT to the supervisor is forwarded to every worker
as SIGTERM; a worker stops accepting, lets in-flight responses finish within
:data:`http_serving.server.SHUTDOWN_TIMEOUT`, runs its app's cleanup and
exits 0; the supervisor then exits 0.  Workers ignore SIGINT themselves (a
Ctrl-C reaches the whole process group; the supervisor forwards it once),
and a worker whose supervisor dies (its pipe to the supervisor reaches EOF)
shuts down the same way.

A worker that exits on its own (a crash, the OOM killer, a stray signal) is
not restarted: the supervisor stops the others as above and exits 1, so the
service manager restarts the whole server (the NixOS module's units have
``Restart=on-failure``).  Restarting the one worker would run its start-up
cleanups (half-written uploads, the cache's unfinished fills) while its
siblings use those directories, and a worker that keeps crashing would hide
behind a port that still answers.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import multiprocess

from .server import serve_app

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable prometheus_client reads (at import) for its multiprocess mode."""
BACKLOG = 128
"""Listen backlog of each worker's socket (aiohttp's default)."""
READY, GO, LISTENING = "ready", "go", "listening"
"""Messages between a worker and the supervisor (see the module docstring)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""What the supervisor forwards to its workers (as SIGTERM)."""
_STOPPED_OK = {0, -signal.SIGTERM, -signal.SIGINT}
"""Exit codes of a worker that stopped when told to."""

log = logging.getLogger("nixshard.workers")
T = TypeVar("T")


def bind_group(host: str, port: int, count: int) -> list[list[socket.socket]]:
    """``count`` sets of listening sockets on every address of ``host:port``, all with
    ``SO_REUSEPORT`` (set ``i`` is worker ``i``'s; one socket per address, as
    asyncio's ``create_server`` binds every address ``host`` resolves to).

    Port 0 picks one free port for all of them.

    Raises:
        OSError: ``host`` does not resolve, or the port is taken (also by sockets
            that have ``SO_REUSEPORT``: the check binds without it first).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    addresses = list(dict.fromkeys((family, sockaddr[:2]) for family, _, _, _, sockaddr in infos))
    probes = []
    try:
        for family, sockaddr in addresses:
            probe = socket.socket(family, socket.SOCK_STREAM)
            probes.append(probe)
            _prepare(probe, family, reuse_port=False)
            probe.bind((sockaddr[0], port))  # EADDRINUSE: someone listens there
            port = probe.getsockname()[1]
    finally:
        for probe in probes:
            probe.close()
    groups: list[list[socket.socket]] = []
    try:
        for _ in range(count):
            group: list[socket.socket] = []
            groups.append(group)
            for family, sockaddr in addresses:
                sock = socket.socket(family, socket.SOCK_STREAM)
                group.append(sock)
                _prepare(sock, family, reuse_port=True)
                sock.bind((sockaddr[0], port))
                sock.listen(BACKLOG)
    except BaseException:
        for sock in (s for group in groups for s in group):
            sock.close()
        raise
    return groups


def _prepare(sock: socket.socket, family: int, reuse_port: bool) -> None:
    """The options asyncio's ``create_server`` sets (SO_REUSEADDR; IPV6_V6ONLY on IPv6),
    plus SO_REUSEPORT when asked."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)


@dataclass
class WorkerLink:
    """What a worker gets from its supervisor: its number, its listening sockets and
    its end of the pipe to the supervisor (picklable while a worker is spawned).

    Attributes:
        index: 0-based worker number; count: how many workers there are.
    """

    index: int
    count: int
    sockets: list[socket.socket]
    conn: Connection

    def serve(self, app: web.Application, host: str, port: int, **kwargs: Any) -> None:
        """Run :func:`http_serving.server.serve_app` for ``app`` on this worker's sockets
        until SIGTERM or the supervisor's death; ``host:port`` names the sites,
        ``kwargs`` as ``serve_app`` (access log, ``ssl_context``, ...)."""
        asyncio.run(serve_app(app, host, port, sockets=self.sockets,
                              before_listen=self._wait_for_go, listening=self._listening,
                              signals=(signal.SIGTERM,), **kwargs))

    async def _wait_for_go(self, stop: asyncio.Event) -> None:
        """Report ``ready``, wait for ``go`` (or ``stop``); from then on the pipe's EOF
        (the supervisor died) sets ``stop``.  Anything but ``go`` sets ``stop``."""
        loop = asyncio.get_running_loop()
        fd = self.conn.fileno()
        self.conn.send(READY)
        answer: asyncio.Future[str | None] = loop.create_future()

        def readable() -> None:
            loop.remove_reader(fd)
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                message = None
            if not answer.done():
                answer.set_result(message)

        loop.add_reader(fd, readable)
        stopped = asyncio.ensure_future(stop.wait())
        either: list[asyncio.Future[Any]] = [answer, stopped]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not answer.done() or answer.result() != GO:
            loop.remove_reader(fd)
            stop.set()
            return

        def supervisor_gone() -> None:
            loop.remove_reader(fd)
            log.warning("worker %d: the supervisor is gone; stopping", self.index + 1)
            stop.set()

        loop.add_reader(fd, supervisor_gone)

    def _listening(self) -> None:
        self.conn.send(LISTENING)


def _worker_main(main: Callable[[T, WorkerLink], None], arg: T, link: WorkerLink) -> None:
    """A spawned worker's entry point: ``main(arg, link)`` (see :func:`run_workers`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    main(arg, link)


@dataclass
class _Worker:
    """The supervisor's view of one worker."""

    index: int
    process: BaseProcess
    conn: Connection | None
    ready: bool = False
    listening: bool = False
    exitcode: int | None = None


@dataclass
class _Supervisor:
    """The supervisor's state while it runs (see :func:`run_workers`)."""

    what: str
    metrics_dir: str
    workers: list[_Worker] = field(default_factory=list)
    stopping: bool = False
    failed: bool = False

    def stop(self) -> None:
        """Forward SIGTERM to every worker still running (they stop gracefully)."""
        self.stopping = True
        for worker in self.workers:
            if worker.exitcode is None and worker.process.pid is not None:
                try:
                    os.kill(worker.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Handler of SIGTERM and SIGINT: a clean shutdown of every worker."""
        if not self.stopping:
            log.info("%s: %s: stopping %d workers", self.what, signal.Signals(signum).name,
                     len(self.workers))
        self.stop()

    def watch(self) -> None:
        """Relay the start-up messages and reap workers until every one has exited."""
        while any(w.exitcode is None for w in self.workers):
            waiting: dict[object, _Worker] = {}
            watched: list[Connection | int] = []
            for w in self.workers:
                if w.exitcode is None:
                    waiting[w.process.sentinel] = w
                    watched.append(w.process.sentinel)
                    if w.conn is not None:
                        waiting[w.conn] = w
                        watched.append(w.conn)
            for ready in wait(watched, timeout=1.0):
                worker = waiting[ready]
                if ready is worker.conn:
                    self._message(worker)
                elif worker.exitcode is None:
                    self._reap(worker)

    def _message(self, worker: _Worker) -> None:
        assert worker.conn is not None
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            worker.conn.close()
            worker.conn = None
            return
        if message == READY:
            worker.ready = True
            if not self.stopping and all(w.ready for w in self.workers):
                for w in self.workers:
                    if w.conn is not None:
                        try:
                            w.conn.send(GO)
                        except OSError:  # it just died: reaped next round
                            pass
        elif message == LISTENING:
            worker.listening = True
            if all(w.listening for w in self.workers):
                log.info("%s: %d workers listening (pids %s)", self.what, len(self.workers),
                         " ".join(str(w.process.pid) for w in self.workers))

    def _reap(self, worker: _Worker) -> None:
        worker.process.join()
        code = worker.exitcode = worker.process.exitcode
        assert code is not None and worker.process.pid is not None
        multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
            worker.process.pid, self.metrics_dir)
        if worker.conn is not None:
            worker.conn.close()
            worker.conn = None
        if not self.stopping:
            log.error("%s: worker %d (pid %d) exited unexpectedly with code %d; stopping the "
                      "others", self.what, worker.index + 1, worker.process.pid, code)
            self.failed = True
            self.stop()
        elif code not in _STOPPED_OK:
            log.error("%s: worker %d (pid %d) exited with code %d while stopping", self.what,
                      worker.index + 1, worker.process.pid, code)
            self.failed = True


def run_workers(count: int, main: Callable[[T, WorkerLink], None], arg: T,
                host: str, port: int, *, what: str = "nixshard") -> int:
    """Serve ``host:port`` with ``count`` worker processes until they stop; the exit
    status for the command: 0 after a requested shutdown, 1 when a worker died
    (see the module docstring).

    Each worker runs ``main(arg, link)`` in a fresh interpreter (``main`` a
    module-level function, ``arg`` picklable): it sets up its app and calls
    ``link.serve(app, host, port, ...)``.  ``what`` prefixes the supervisor's
    log lines (logger ``nixshard.workers``).

    Raises:
        OSError: the address cannot be bound (nothing was started).
    """
    groups = bind_group(host, port, count)
    metrics_dir = tempfile.mkdtemp(prefix="nixshard-metrics-")
    saved = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = metrics_dir
    supervisor = _Supervisor(what, metrics_dir)
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the workers: they ignore it
    try:
        _start(supervisor, count, main, arg, groups)
        signal.signal(signal.SIGINT, supervisor.on_signal)
        supervisor.watch()
        return 1 if supervisor.failed else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _kill_left(supervisor.workers)
        for sock in (s for group in groups for s in group):
            sock.close()
        if saved is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = saved
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _start(supervisor: _Supervisor, count: int, main: Callable[[T, WorkerLink], None],
           arg: T, groups: Sequence[list[socket.socket]]) -> None:
    """Spawn the workers (fewer when a stop signal comes meanwhile); the supervisor's
    copies of each worker's sockets are closed once the worker has its own."""
    context = multiprocessing.get_context("spawn")
    for index in range(count):
        if supervisor.stopping:
            break
        ours, theirs = context.Pipe()
        link = WorkerLink(index, count, groups[index], theirs)
        process = context.Process(target=_worker_main, args=(main, arg, link),
                                  name=f"worker-{index + 1}")
        process.start()
        theirs.close()
        for sock in groups[index]:
            sock.close()
        supervisor.workers.append(_Worker(index, process, ours))


def _kill_left(workers: Sequence[_Worker]) -> None:
    """SIGKILL and reap workers still running when the supervisor leaves abnormally."""
    for worker in workers:
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()

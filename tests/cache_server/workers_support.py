"""Which worker of a ``nixshard serve --workers N`` answers a connection, read from /proc.

The kernel spreads a port's connections over the workers' SO_REUSEPORT
sockets; a test that needs requests in given workers opens connections until
it has enough in each (:func:`connections_by_worker`), and finds a
connection's worker by the server-side socket's inode in the workers' file
descriptors (:func:`serving_pid`).
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path

from nixshard.localnet import ManagedProcess

MAX_CONNECTIONS = 200
"""Connections :func:`connections_by_worker` opens at most before it gives up (the odds
that 200 of 2 evenly spread connections all reach one worker are 2**-199)."""


def worker_pids(gateway: ManagedProcess) -> list[int]:
    """Pids of the gateway's worker processes (children spawned by multiprocessing;
    not its resource tracker)."""
    pids = []
    for pid in gateway.child_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"--multiprocessing-fork" in cmdline:
            pids.append(pid)
    return pids


def _socket_inode(server_port: int, client_port: int) -> int | None:
    """Inode of the server side of the TCP connection 127.0.0.1:client_port ->
    127.0.0.1:server_port (from /proc/net/tcp), or None."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if int(local.split(":")[1], 16) == server_port and \
                int(remote.split(":")[1], 16) == client_port and inode:
            return inode
    return None


def serving_pid(conn: http.client.HTTPConnection, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server side of ``conn`` (connected, and answered once
    so that a worker has accepted it), or None."""
    assert conn.sock is not None
    inode = _socket_inode(conn.port, conn.sock.getsockname()[1])
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            names = os.listdir(fd_dir)
        except FileNotFoundError:
            continue
        for name in names:
            try:
                if os.readlink(fd_dir / name) == target:
                    return pid
            except OSError:  # closed meanwhile
                continue
    return None


def connections_by_worker(gateway: ManagedProcess, per_worker: int
                          ) -> dict[int, list[http.client.HTTPConnection]]:
    """Keep-alive connections to ``gateway``, ``per_worker`` for each worker pid, each
    already answered ``GET /healthz`` once; the other connections opened on the way
    are closed.

    Raises:
        AssertionError: some worker got none of :data:`MAX_CONNECTIONS` connections.
    """
    pids = worker_pids(gateway)
    found: dict[int, list[http.client.HTTPConnection]] = {pid: [] for pid in pids}
    for _ in range(MAX_CONNECTIONS):
        if all(len(conns) >= per_worker for conns in found.values()):
            return found
        conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=120)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        pid = serving_pid(conn, pids)
        if pid is not None and len(found[pid]) < per_worker:
            found[pid].append(conn)
        else:
            conn.close()
    raise AssertionError(f"{MAX_CONNECTIONS} connections did not reach every worker of "
                         f"{pids} {per_worker} times: {[len(c) for c in found.values()]}")

"""Free TCP ports on 127.0.0.1 for the processes of a local network."""

from __future__ import annotations

import random
import socket
from pathlib import Path

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

"""``HOST:PORT`` listen addresses, as the node and the cache daemon take them."""

from __future__ import annotations


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6addr]:PORT`` for IPv6) into host and port.

    Raises:
        ValueError: no host, no port, or a port outside 0-65535.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port_text)

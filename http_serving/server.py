"""Serving an aiohttp app so that slow or idle clients cannot hold connections forever.

Used by both servers (``nixshard node`` and ``nixshard serve``).  aiohttp's
keep-alive timer (``keepalive_timeout``) runs from the moment a connection
opens and again from the end of each response, and closes the connection
when it fires while no request is being handled: so a request head must
arrive whole within ``idle_timeout`` seconds, however slowly its bytes
trickle in (checked by ``tests/http_serving/test_server.py``), and
an idle connection is closed after as long.  :func:`serve_app` sets it
explicitly (aiohttp's own default is 75 s; ours is 15 s).

Slow *bodies* are the handlers' business: they read with a stall deadline
(``storage_node.body``, the gateway's staging).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_log import AccessLogger

IDLE_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0


async def serve_app(app: web.Application, host: str, port: int, *,
                    idle_timeout: float = IDLE_TIMEOUT,
                    access_log: logging.Logger | None = None,
                    access_log_class: type[AbstractAccessLogger] = AccessLogger,
                    stop: asyncio.Event | None = None) -> None:
    """Serve ``app`` on ``host:port`` until ``stop`` is set or SIGINT/SIGTERM arrives.

    ``idle_timeout``: seconds a connection may stay without a whole request
    head (from when it opened, or from its last response).

    Raises:
        OSError: the address cannot be bound.
    """
    kwargs: dict[str, Any] = {"access_log_class": access_log_class} if access_log else {}
    runner = web.AppRunner(app, keepalive_timeout=idle_timeout, access_log=access_log,
                           shutdown_timeout=SHUTDOWN_TIMEOUT, **kwargs)
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def run_app(app: web.Application, host: str, port: int, **kwargs: Any) -> None:
    """:func:`serve_app` on a new event loop (the entry points' ``web.run_app``)."""
    asyncio.run(serve_app(app, host, port, **kwargs))

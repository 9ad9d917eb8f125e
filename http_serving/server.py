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

TLS: given an ``ssl_context`` (:func:`http_serving.tls.server_ssl_context`)
the server speaks HTTPS only.  A TLS handshake happens before aiohttp sees
the connection, so the keep-alive timer cannot guard it; the handshake gets
its own limit instead, ``idle_timeout`` seconds (asyncio's default would be
60 s), so a client that connects and stays silent is dropped as quickly as
one that sends no request head.

Several processes on one port (:mod:`http_serving.workers`): each worker
serves listening sockets its supervisor bound (``sockets``), waits for the
supervisor's go between setting the app up and accepting (``before_listen``)
and reports when it accepts (``listening``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_log import AccessLogger

from http_serving.allocator import keep_freed_memory

IDLE_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0


class _TlsSite(web.BaseSite):
    """A TCP site serving TLS whose handshakes must finish within ``handshake_timeout``
    seconds (aiohttp's ``TCPSite`` leaves asyncio's 60 s); on ``sock`` (a listening
    socket bound elsewhere) when given, else on ``host:port``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int,
                 ssl_context: ssl.SSLContext, handshake_timeout: float,
                 sock: socket.socket | None = None) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host, self._port = host, port
        self._handshake_timeout = handshake_timeout
        self._sock = sock

    @property
    def name(self) -> str:
        """``https://HOST:PORT``."""
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        """Register with the runner and listen."""
        await super().start()
        server = self._runner.server
        assert server is not None
        where: dict[str, Any] = ({"sock": self._sock} if self._sock is not None
                                 else {"host": self._host, "port": self._port})
        self._server = await asyncio.get_running_loop().create_server(
            server, ssl=self._ssl_context, backlog=self._backlog,
            ssl_handshake_timeout=self._handshake_timeout, **where)


async def serve_app(app: web.Application, host: str, port: int, *,
                    idle_timeout: float = IDLE_TIMEOUT,
                    access_log: logging.Logger | None = None,
                    access_log_class: type[AbstractAccessLogger] = AccessLogger,
                    stop: asyncio.Event | None = None,
                    ssl_context: ssl.SSLContext | None = None,
                    sockets: Sequence[socket.socket] = (),
                    before_listen: Callable[[asyncio.Event], Awaitable[None]] | None = None,
                    listening: Callable[[], None] | None = None,
                    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
                    ) -> None:
    """Serve ``app`` on ``host:port`` until ``stop`` is set or one of ``signals`` arrives.

    ``idle_timeout``: seconds a connection may stay without a whole request
    head (from when it opened, or from its last response), and, with TLS,
    seconds its handshake may take.  ``ssl_context``: serve HTTPS with it
    (:func:`http_serving.tls.server_ssl_context`); None serves plain HTTP.

    ``sockets``: listening sockets to serve instead of binding ``host:port``
    (which then only names the site).  ``before_listen(stop)`` is awaited
    once the app is set up (its start-up hooks ran) and before any
    connection is accepted; when ``stop`` is set by then, nothing is served.
    ``listening()`` is called once every site accepts.  On the way out the
    sites stop accepting, in-flight requests get :data:`SHUTDOWN_TIMEOUT`
    seconds to finish, then the app's cleanup hooks run.

    Raises:
        OSError: the address cannot be bound.
    """
    keep_freed_memory()
    kwargs: dict[str, Any] = {"access_log_class": access_log_class} if access_log else {}
    runner = web.AppRunner(app, keepalive_timeout=idle_timeout, access_log=access_log,
                           shutdown_timeout=SHUTDOWN_TIMEOUT, **kwargs)
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        if before_listen is not None:
            await before_listen(stop)
        if not stop.is_set():
            for site in _sites(runner, host, port, ssl_context, idle_timeout, sockets):
                await site.start()
            if listening is not None:
                listening()
            await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def _sites(runner: web.BaseRunner, host: str, port: int, ssl_context: ssl.SSLContext | None,
           idle_timeout: float, sockets: Sequence[socket.socket]) -> list[web.BaseSite]:
    """The sites of :func:`serve_app`: one per socket of ``sockets``, else one on
    ``host:port``."""
    if not sockets:
        return [web.TCPSite(runner, host, port) if ssl_context is None
                else _TlsSite(runner, host, port, ssl_context, idle_timeout)]
    return [web.SockSite(runner, sock) if ssl_context is None
            else _TlsSite(runner, host, port, ssl_context, idle_timeout, sock)
            for sock in sockets]


def run_app(app: web.Application, host: str, port: int, *,
            ssl_context: ssl.SSLContext | None = None, **kwargs: Any) -> None:
    """:func:`serve_app` on a new event loop (the entry points' ``web.run_app``).

    ``ssl_context``: serve HTTPS with it (None: plain HTTP); ``kwargs`` as
    :func:`serve_app`.

    Raises:
        OSError: the address cannot be bound.
    """
    asyncio.run(serve_app(app, host, port, ssl_context=ssl_context, **kwargs))

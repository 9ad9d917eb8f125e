"""A running :func:`http_serving.server.serve_app` for the http_serving tests."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from http_serving.server import serve_app
from nixshard.localnet import free_port


@asynccontextmanager
async def serving(app: web.Application, *, idle_timeout: float,
                  ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """Serve ``app`` on a free 127.0.0.1 port (TLS with ``ssl_context``) until the block
    ends; yields the port once it accepts connections.

    Raises:
        RuntimeError: the server stopped, or accepted nothing within about 4 s
            (its own exception, when it raised one, comes instead).
    """
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve_app(app, "127.0.0.1", port, idle_timeout=idle_timeout,
                                         stop=stop, ssl_context=ssl_context))
    try:
        for _ in range(200):
            if task.done():  # serve_app failed (or returned) before it accepted
                task.result()  # its exception, if it raised one
                raise RuntimeError(f"server on port {port} stopped before it accepted")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
            else:
                writer.close()
                await writer.wait_closed()
                break
        else:
            raise RuntimeError(f"server never accepted on port {port}")
    except BaseException:
        stop.set()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    try:
        yield port
    finally:
        stop.set()
        await task

"""An aiohttp app served in-process on 127.0.0.1 (a fake node or upstream cache)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web


@asynccontextmanager
async def serve_app(app: web.Application, port: int = 0, **runner_options: Any
                    ) -> AsyncIterator[str]:
    """Serve ``app`` on ``port`` of 127.0.0.1 (0: a free one); yields its base URL,
    cleans up after.

    ``runner_options`` go to :class:`aiohttp.web.AppRunner` (default: no access log).
    """
    runner = web.AppRunner(app, **{"access_log": None, **runner_options})
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()

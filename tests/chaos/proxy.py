"""A fault-injecting HTTP proxy in front of storage nodes (TEST-ONLY, loopback only).

One process listens on one port per proxied node and forwards every request
to that node, streaming the answer back.  A control port switches the
behaviour of each proxied node at run time, so a chaos run can make a node
hostile for a while and heal it again without restarting anything::

    python -m tests.chaos.proxy --control PORT --route LISTEN_PORT=http://127.0.0.1:NODE_PORT ...
    curl -X PUT 'http://127.0.0.1:PORT/mode/LISTEN_PORT?mode=endless'

From a test: ``proxy_process(...)`` is that command as a
:class:`nixshard.localnet.ManagedProcess`, and ``set_mode(proxy, port, mode)``
switches one proxied port.

Modes (what the proxied node then does):

``pass``
    forwards faithfully (a node that is down behind the proxy makes the
    proxy drop the client's connection, as the node itself would);
``down``
    drops every connection before answering;
``stall``
    reads the request and never answers (like a SIGSTOPped node);
``deep-json``
    ``POST /shards/has`` answers 200 with 100,000 nested ``[`` (others forwarded);
``endless``
    ``GET /records/*``, ``POST /shards/has`` and ``POST /shards/batch-get``
    answer 200 and stream bytes forever;
``trickle``
    every answer is forwarded at 1,000 bytes per second;
``flip``
    every answer of ``POST /shards/batch-get`` and ``GET /shards/*`` has one
    byte past its first 4 flipped (a lying or rotting node);
``slow-has``
    ``POST /shards/has`` waits 1.5 s before it is forwarded.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp
import httpx
from aiohttp import web

from nixshard.localnet import ManagedProcess

MODES = ("pass", "down", "stall", "deep-json", "endless", "trickle", "flip", "slow-has")
TRICKLE_BYTES_PER_SECOND = 1000
SLOW_HAS_SECONDS = 1.5
DEEP_JSON = b"[" * 100_000
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
               "proxy-connection", "te", "trailer", "upgrade", "content-encoding"}
REPO_ROOT = Path(__file__).resolve().parents[2]


def proxy_process(log_path: Path, control: int, routes: Mapping[int, str]) -> ManagedProcess:
    """This proxy as a local process (not started): control port ``control``, and
    ``routes`` from a listening port to a node URL; ready once ``/ready`` answers."""
    args = ["--control", str(control)]
    for port, url in routes.items():
        args += ["--route", f"{port}={url}"]
    return ManagedProcess("fault proxy", args, f"http://127.0.0.1:{control}", log_path,
                          health_path="/ready", program=(sys.executable, "-m", "tests.chaos.proxy"),
                          cwd=REPO_ROOT)


def set_mode(proxy: ManagedProcess, port: int, mode: str) -> None:
    """Switch proxied port ``port`` to ``mode`` (one of :data:`MODES`)."""
    httpx.put(f"{proxy.url}/mode/{port}", params={"mode": mode}, timeout=10).raise_for_status()


class Route:
    """One proxied node: where to forward, and the current mode."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"


def _drop(request: web.Request) -> web.StreamResponse:
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=503)  # never sent: the connection is gone


async def _endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    piece = b"nixshard-record-v3\n" + bytes(64 * 1024)
    while True:
        await resp.write(piece)
        await asyncio.sleep(0)


def handler_for(route: Route, session: aiohttp.ClientSession
                ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The request handler of one proxied node."""

    async def handle(request: web.Request) -> web.StreamResponse:
        mode, path = route.mode, request.path
        if mode == "down":
            return _drop(request)
        body = await request.read()
        if mode == "stall":
            await asyncio.Event().wait()
        is_has = request.method == "POST" and path == "/shards/has"
        if mode == "deep-json" and is_has:
            return web.Response(body=DEEP_JSON, content_type="application/json")
        if mode == "endless" and (is_has or path == "/shards/batch-get"
                                  or (request.method == "GET" and path.startswith("/records/"))):
            return await _endless(request)
        if mode == "slow-has" and is_has:
            await asyncio.sleep(SLOW_HAS_SECONDS)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            upstream = await session.request(request.method, route.upstream + request.path_qs,
                                             data=body, headers=headers,
                                             allow_redirects=False)
        except (aiohttp.ClientError, OSError):
            return _drop(request)
        async with upstream:
            resp = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS})
            flip = mode == "flip" and (path == "/shards/batch-get" or path.startswith("/shards/"))
            if upstream.content_length is not None:
                resp.content_length = upstream.content_length
            await resp.prepare(request)
            sent = 0
            flipped = False
            try:
                async for piece in upstream.content.iter_any():
                    if flip and not flipped and sent + len(piece) > 4:
                        at = max(4 - sent, 0) + random.randrange(len(piece) - max(4 - sent, 0))
                        piece = piece[:at] + bytes([piece[at] ^ 0xFF]) + piece[at + 1:]
                        flipped = True
                    if mode == "trickle":
                        for start in range(0, len(piece), TRICKLE_BYTES_PER_SECOND):
                            await resp.write(piece[start:start + TRICKLE_BYTES_PER_SECOND])
                            await asyncio.sleep(1.0)
                    else:
                        await resp.write(piece)
                    sent += len(piece)
            except (aiohttp.ClientError, OSError):
                return _drop(request)
            await resp.write_eof()
            return resp

    return handle


async def main(control: int, routes: dict[int, str]) -> None:
    """Serve the proxied ports and the control port until SIGTERM or SIGINT."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None))
    table = {port: Route(url) for port, url in routes.items()}
    runners: list[web.AppRunner] = []

    async def set_mode(request: web.Request) -> web.Response:
        port = int(request.match_info["port"])
        mode = request.query.get("mode", "")
        if port not in table or mode not in MODES:
            return web.Response(status=400, text=f"unknown port {port} or mode {mode!r}")
        table[port].mode = mode
        return web.Response(text="ok")

    control_app = web.Application()
    control_app.router.add_put("/mode/{port}", set_mode)
    control_app.router.add_get("/ready", lambda _: _ready())
    for port, route in table.items():
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handler_for(route, session))
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    runner = web.AppRunner(control_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", control).start()
    runners.append(runner)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()
    await session.close()


async def _ready() -> web.Response:
    return web.Response(text="ok")


def _parse_route(text: str) -> tuple[int, str]:
    port, _, url = text.partition("=")
    return int(port), url


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--route", action="append", type=_parse_route, default=[])
    args = parser.parse_args()
    asyncio.run(main(args.control, dict(args.route)))

"""Fake upstream binary caches for the cache_server.upstream tests: signed narinfos and
zstd NARs of small files, served by real HTTP servers on 127.0.0.1.

The ``servers`` and ``session`` fixtures that start them are in conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import zstandard
from aiohttp import web

from nix_formats.hash import format_sha256_nix32
from nix_formats.keys import SecretKey, sign_narinfo
from nix_formats.nar import nar_string as _s  # the token Nix writes
from nix_formats.narinfo import NarInfo
from nix_formats.nix32 import encode as nix32
from nix_formats.store_path import StorePath
from tests.support.servers import serve_app

LOGGER = "nixshard.serve.upstream"
Session = aiohttp.ClientSession
KEY = SecretKey.generate("upstream-test-1")
OTHER_KEY = SecretKey.generate("someone-else-1")


def hash_part(n: int) -> str:
    return nix32(hashlib.sha1(str(n).encode()).digest())


@dataclass
class Published:
    """A store path as published in a fake cache."""

    hash_part: str
    narinfo: NarInfo
    text: str
    nar: bytes  # uncompressed
    file: bytes  # as served (zstd)


def publish(n: int, key: SecretKey | None = KEY, **changes: object) -> Published:
    """A signed narinfo + zstd NAR for a small file; ``changes`` override narinfo fields
    after signing (so they break the signature unless it is re-made)."""
    nar = file_nar(n)
    file = zstandard.ZstdCompressor().compress(nar)
    file_hash = nix32(hashlib.sha256(file).digest())
    h = hash_part(n)
    narinfo = NarInfo(
        store_path=StorePath.parse_basename(f"{h}-upstream-test-{n}"),
        url=f"nar/{file_hash}.nar.zst",
        compression="zstd",
        file_hash=f"sha256:{file_hash}",
        file_size=len(file),
        nar_hash=format_sha256_nix32(hashlib.sha256(nar).digest()),
        nar_size=len(nar),
    )
    if key is not None:
        sign_narinfo(narinfo, key)
    for name, value in changes.items():
        setattr(narinfo, name, value)
    return Published(h, narinfo, narinfo.render(), nar, file)


def file_nar(n: int) -> bytes:
    """The NAR of a single regular file of 400 kB of incompressible bytes."""
    contents = random.Random(n).randbytes(400_000)
    return b"".join(_s(t) for t in (b"nix-archive-1", b"(", b"type", b"regular", b"contents",
                                     contents, b")"))


@dataclass
class FakeCache:
    """An HTTP server on 127.0.0.1: ``files`` maps a path to a body (or a status);
    ``requests`` counts requests per path; ``status``/``delay`` apply to every request."""

    files: dict[str, bytes | int] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    status: int | None = None
    delay: float = 0.0
    url: str = ""

    def add(self, pub: Published, *, narinfo: str | None = None) -> None:
        self.files[f"/{pub.hash_part}.narinfo"] = (narinfo or pub.text).encode()
        self.files[f"/{pub.narinfo.url}"] = pub.file

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status is not None:
            return web.Response(status=self.status, text="no\n")
        body = self.files.get(request.path)
        if body is None:
            return web.Response(status=404, text="not here\n")
        if isinstance(body, int):
            return web.Response(status=body, text="status\n")
        response = web.StreamResponse()
        response.content_length = len(body)
        await response.prepare(request)
        for i in range(0, len(body), 64 * 1024):  # a streamed body, several writes
            await response.write(body[i : i + 64 * 1024])
        await response.write_eof()
        return response


Servers = Callable[..., Awaitable[FakeCache]]
"""``await servers(prefix="")`` -> a running FakeCache (the ``servers`` fixture)."""


async def start_fake_cache(stack: contextlib.AsyncExitStack, prefix: str = "") -> FakeCache:
    """A FakeCache served under ``prefix`` until ``stack`` closes."""
    cache = FakeCache()
    app = web.Application()
    app.router.add_route("*", prefix + "/{tail:.*}", _strip(cache, prefix))
    cache.url = await stack.enter_async_context(serve_app(app)) + prefix
    return cache


def _strip(
    cache: FakeCache, prefix: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        if prefix:
            request = request.clone(rel_url=request.rel_url.path[len(prefix):] or "/")
        return await cache.handle(request)

    return handler


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


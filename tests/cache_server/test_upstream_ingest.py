"""Upstream ingest downloads are capped by what the signed narinfo allows
(:mod:`cache_server.upstream_ingest`), against real HTTP servers on 127.0.0.1.

An upstream's signature covers NarHash and NarSize, not URL, Compression or
FileSize: a hostile upstream serving an endless file, a huge Content-Length,
an unknown compression or a redirect to another host never makes the
gateway fetch more than the signed NarSize allows, or from anywhere else.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from cache_server.upstream import MAX_REDIRECTS, UpstreamHit, Upstreams, UpstreamUnavailableError
from cache_server.upstream_ingest import UpstreamFileError, download_limit, stage_upstream_file
from nix_formats.compression import max_compressed_size
from nix_formats.errors import UnsupportedCompressionError
from nix_formats.hash import format_sha256_nix32
from nix_formats.keys import SecretKey
from nix_formats.narinfo import NarInfo
from nix_formats.store_path import StorePath
from tests.support.servers import serve_app

KEY = SecretKey.generate("upstream-ingest-test-1")
NAR_URL = "nar/" + "1" * 52 + ".nar.zst"
PIECE = 64 * 1024


def narinfo(nar_size: int = 152, compression: str = "zstd",
            file_size: int | None = None) -> NarInfo:
    return NarInfo(store_path=StorePath.parse_basename("0" * 32 + "-bomb"), url=NAR_URL,
                   compression=compression, nar_size=nar_size, file_size=file_size,
                   nar_hash=format_sha256_nix32(hashlib.sha256(b"x").digest()))


class Upstream:
    """A hostile upstream: ``/nar/...`` streams ``body_bytes`` bytes (``content_length``
    announced, or chunked); ``/go/...`` redirects to ``redirect``.  ``sent``: bytes written."""

    def __init__(self) -> None:
        self.body_bytes = 0
        self.content_length: int | None = None
        self.redirect = ""
        self.sent = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/go/"):
            raise web.HTTPFound(self.redirect)
        resp = web.StreamResponse()
        if self.content_length is not None:
            resp.content_length = self.content_length
        await resp.prepare(request)
        try:
            while self.sent < self.body_bytes:
                await resp.write(bytes(PIECE))
                self.sent += PIECE
        except ConnectionError:
            return resp  # the gateway hung up: what it should do
        await resp.write_eof()
        return resp


Start = Callable[[], Awaitable[Upstream]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    async with contextlib.AsyncExitStack() as stack:
        async def go() -> Upstream:
            upstream = Upstream()
            app = web.Application()
            app.router.add_get("/{tail:.*}", upstream.handle)
            upstream.url = await stack.enter_async_context(serve_app(app))
            return upstream

        yield go


def test_the_cap_comes_from_the_signed_nar_size() -> None:
    """The issue's case: NarSize 152, --max-upload-bytes 10 MB -> about 64 KiB, not 10 MB."""
    assert download_limit(narinfo(152), 10_000_000) == max_compressed_size("zstd", 152) < 70_000
    assert download_limit(narinfo(152, "none"), 10_000_000) == 152
    assert download_limit(narinfo(152, file_size=100), 10_000_000) == 100
    assert download_limit(narinfo(1 << 40), 10_000_000) == 10_000_000
    for unknown in ("gzip", "lz4", "zstd2"):
        with pytest.raises(UnsupportedCompressionError):
            download_limit(narinfo(152, unknown), 10_000_000)


async def test_an_endless_file_is_cut_off_at_the_cap(start: Start, session: aiohttp.ClientSession,
                                                      tmp_path: Path) -> None:
    """A chunked body of 512 MiB for a narinfo saying NarSize 152: cut after ~64 KiB."""
    upstream = await start()
    upstream.body_bytes = 512 << 20
    info = narinfo(152)
    hit = UpstreamHit(0, upstream.url, info, info.render())
    limit = download_limit(info, 10_000_000)
    staged = tmp_path / "staged"
    with pytest.raises(UpstreamFileError, match=f"larger than the {limit} bytes"):
        await stage_upstream_file(Upstreams([upstream.url], [KEY.public_key()], session), hit,
                                  staged, limit)
    assert staged.stat().st_size <= limit
    assert upstream.sent < 64 << 20  # the gateway hung up: loopback buffers, not the file


async def test_a_content_length_over_the_cap_is_refused_before_the_body(
        start: Start, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    upstream = await start()
    upstream.body_bytes = upstream.content_length = 1 << 30
    info = narinfo(152)
    hit = UpstreamHit(0, upstream.url, info, info.render())
    staged = tmp_path / "staged"
    with pytest.raises(UpstreamFileError, match="Content-Length 1073741824 is over"):
        await stage_upstream_file(Upstreams([upstream.url], [KEY.public_key()], session), hit,
                                  staged, download_limit(info, 10_000_000))
    assert not staged.exists()


async def test_a_file_shorter_than_its_file_size_is_refused(
        start: Start, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    upstream = await start()
    upstream.body_bytes = PIECE
    info = narinfo(1 << 20, file_size=2 * PIECE)
    hit = UpstreamHit(0, upstream.url, info, info.render())
    with pytest.raises(UpstreamFileError, match=f"{PIECE} bytes, its narinfo says FileSize"):
        await stage_upstream_file(Upstreams([upstream.url], [KEY.public_key()], session), hit,
                                  tmp_path / "staged", download_limit(info, 10_000_000))


async def test_redirects_stay_under_the_upstream(start: Start,
                                                 session: aiohttp.ClientSession) -> None:
    """A redirect to another host (or out of the upstream's path) is refused; one within
    the upstream is followed."""
    upstream, elsewhere = await start(), await start()
    elsewhere.body_bytes = PIECE
    upstreams = Upstreams([upstream.url], [KEY.public_key()], session)
    upstream.redirect = f"{elsewhere.url}/{NAR_URL}"
    with pytest.raises(UpstreamUnavailableError, match="redirect to .* refused"):
        await upstreams.open_file(0, "go/x")
    assert elsewhere.sent == 0
    upstreams = Upstreams([upstream.url], [KEY.public_key()], session)  # a fresh breaker
    upstream.body_bytes = PIECE
    upstream.redirect = f"/{NAR_URL}"
    async with await upstreams.open_file(0, "go/y") as resp:
        assert len(await resp.read()) == PIECE
    upstream.redirect = "/go/again"  # a loop
    upstreams = Upstreams([upstream.url], [KEY.public_key()], session)
    with pytest.raises(UpstreamUnavailableError, match=f"more than {MAX_REDIRECTS} redirects"):
        await upstreams.open_file(0, "go/z")

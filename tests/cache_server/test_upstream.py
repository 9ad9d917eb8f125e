"""cache_server.upstream: asking upstream binary caches, against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import socket
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import zstandard
from aiohttp import web

from cache_server.errors import CacheServerError
from cache_server.upstream import (
    UpstreamHit,
    Upstreams,
    UpstreamUnavailableError,
    relative_url_problem,
)
from nix_formats.compression import decompress
from nix_formats.errors import StorePathError
from nix_formats.hash import format_sha256_nix32
from nix_formats.keys import PublicKey, SecretKey, sign_narinfo
from nix_formats.nar import dump_path
from nix_formats.nar import nar_string as _s  # the token Nix writes
from nix_formats.nar_parser import validate_nar
from nix_formats.narinfo import NarInfo
from nix_formats.nix32 import encode as nix32
from nix_formats.store_path import StorePath
from nixshard.localnet import env_with_nix_config
from tests.support.clock import Clock
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


Servers = Callable[..., Awaitable["FakeCache"]]


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    """Start FakeCache servers: ``await servers(prefix="")`` -> a running FakeCache."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(prefix: str = "") -> FakeCache:
            cache = FakeCache()
            app = web.Application()
            app.router.add_route("*", prefix + "/{tail:.*}", _strip(cache, prefix))
            cache.url = await stack.enter_async_context(serve_app(app)) + prefix
            return cache

        yield start


def _strip(
    cache: FakeCache, prefix: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        if prefix:
            request = request.clone(rel_url=request.rel_url.path[len(prefix):] or "/")
        return await cache.handle(request)

    return handler


@pytest.fixture
async def session() -> AsyncIterator[Session]:
    async with aiohttp.ClientSession() as s:
        yield s


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- narinfo --------------------------------------------------------------------------


async def test_hit_with_good_signature(servers: Servers, session: Session) -> None:
    cache = await servers()
    pub = publish(1)
    cache.add(pub)
    ups = Upstreams([cache.url + "/"], [KEY.public_key()], session)
    hit = await ups.narinfo(pub.hash_part)
    assert hit == UpstreamHit(0, cache.url, pub.narinfo, pub.text)
    assert hit.narinfo.render() == hit.text


async def test_any_trusted_key_suffices(servers: Servers, session: Session) -> None:
    cache = await servers()
    pub = publish(2, key=OTHER_KEY)
    cache.add(pub)
    keys = [KEY.public_key(), OTHER_KEY.public_key()]
    hit = await Upstreams([cache.url], keys, session).narinfo(pub.hash_part)
    assert hit is not None and hit.index == 0


@pytest.mark.parametrize(
    ("case", "warning"),
    [
        ("bad-sig", "no valid signature by a trusted key"),
        ("untrusted", "signed by: someone-else-1; trusted: upstream-test-1"),
        ("unsigned", "signed by: nobody"),
        ("wrong-path", "describes another store path"),
        ("malformed", "is malformed"),
        ("not-utf8", "not UTF-8"),
        ("url-dotdot", "'..' path segment"),
        ("url-encoded-dotdot", "'..' path segment"),
        ("url-absolute", "absolute (has a scheme or host)"),
        ("url-host", "absolute (has a scheme or host)"),
        ("url-rooted", "absolute path"),
        ("url-query", "'?'"),
        ("too-big", "larger than"),
    ],
)
async def test_unacceptable_narinfo_is_a_miss_with_a_warning(
    servers: Servers, session: Session, caplog: pytest.LogCaptureFixture, case: str, warning: str
) -> None:
    cache = await servers()
    pub = publish(3)
    if case == "bad-sig":
        pub = publish(3, nar_size=pub.narinfo.nar_size + 1)  # signature no longer matches
    elif case == "untrusted":
        pub = publish(3, key=OTHER_KEY)
    elif case == "unsigned":
        pub = publish(3, key=None)
    elif case == "wrong-path":
        other = publish(4)
        pub = Published(pub.hash_part, other.narinfo, other.text, other.nar, other.file)
    cache.add(pub)
    path = f"/{pub.hash_part}.narinfo"
    bad_urls = {
        "url-dotdot": "nar/../../etc/passwd",
        "url-encoded-dotdot": "nar/%2E%2e/secret",
        "url-absolute": "http://evil.example/nar/x.nar",
        "url-host": "//evil.example/nar/x.nar",
        "url-rooted": "/etc/passwd",
        "url-query": "nar/x.nar?a=b",
    }
    if case in bad_urls:
        pub = publish(3, url=bad_urls[case])
        sign_narinfo(pub.narinfo, KEY)  # validly signed: the URL is not in the fingerprint
        cache.files[path] = pub.narinfo.render().encode()
    elif case == "malformed":
        cache.files[path] = b"StorePath: /nix/store/nope\n"
    elif case == "not-utf8":
        cache.files[path] = pub.text.encode() + b"X-Junk: \xff\n"
    elif case == "too-big":
        cache.files[path] = pub.text.encode() + b"X-Pad: " + b"a" * (1 << 20) + b"\n"
    ups = Upstreams([cache.url], [KEY.public_key()], session)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await ups.narinfo(pub.hash_part) is None
    assert warning in caplog.text
    assert cache.url in caplog.text


@pytest.mark.parametrize("status", [404, 403, 410])
async def test_absent_statuses_are_misses(
    servers: Servers, session: Session, status: int
) -> None:
    cache = await servers()
    pub = publish(5)
    cache.files[f"/{pub.hash_part}.narinfo"] = status
    assert await Upstreams([cache.url], [KEY.public_key()], session).narinfo(pub.hash_part) is None


async def test_first_upstream_misses_second_has_it(servers: Servers, session: Session) -> None:
    first, second = await servers(), await servers()
    pub = publish(6)
    second.add(pub)
    ups = Upstreams([first.url, second.url], [KEY.public_key()], session)
    hit = await ups.narinfo(pub.hash_part)
    assert hit is not None and (hit.index, hit.base_url) == (1, second.url)
    assert first.requests[f"/{pub.hash_part}.narinfo"] == 1


async def test_first_that_has_it_wins(servers: Servers, session: Session) -> None:
    first, second = await servers(), await servers()
    pub = publish(7)
    first.add(pub)
    second.add(pub)
    hit = await Upstreams([first.url, second.url], [KEY.public_key()], session).narinfo(
        pub.hash_part)
    assert hit is not None and hit.index == 0
    assert sum(second.requests.values()) == 0


async def test_unacceptable_first_answer_falls_through(servers: Servers, session: Session) -> None:
    first, second = await servers(), await servers()
    first.add(publish(8, key=OTHER_KEY))
    pub = publish(8)
    second.add(pub)
    hit = await Upstreams([first.url, second.url], [KEY.public_key()], session).narinfo(
        pub.hash_part)
    assert hit is not None and hit.index == 1


async def test_down_upstream_raises_unavailable(session: Session) -> None:
    url = closed_port_url()
    ups = Upstreams([url], [KEY.public_key()], session)
    with pytest.raises(UpstreamUnavailableError, match=rf"{url}: GET {url}/\w+\.narinfo: "
                                                       r"ClientConnectorError") as info:
        await ups.narinfo(hash_part(9))
    assert isinstance(info.value, CacheServerError)


async def test_down_first_upstream_but_second_has_it(servers: Servers, session: Session) -> None:
    second = await servers()
    pub = publish(10)
    second.add(pub)
    ups = Upstreams([closed_port_url(), second.url], [KEY.public_key()], session)
    hit = await ups.narinfo(pub.hash_part)
    assert hit is not None and hit.index == 1


async def test_miss_on_one_and_error_on_another_raises(servers: Servers, session: Session) -> None:
    missing, broken = await servers(), await servers()
    broken.status = 502
    ups = Upstreams([missing.url, broken.url], [KEY.public_key()], session)
    with pytest.raises(UpstreamUnavailableError, match=rf"1 could not be asked: {broken.url}: "
                                                       r".*HTTP 502 Bad Gateway"):
        await ups.narinfo(hash_part(11))


async def test_timeout_raises_unavailable(servers: Servers, session: Session) -> None:
    slow = await servers()
    slow.delay = 1.0
    ups = Upstreams([slow.url], [KEY.public_key()], session, timeout=0.2)
    with pytest.raises(UpstreamUnavailableError, match="timed out after 0.2 s"):
        await ups.narinfo(hash_part(12))


async def test_circuit_breaker_skips_a_failed_upstream(
    servers: Servers, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    broken, good = await servers(), await servers()
    broken.status = 500
    pub = publish(13)
    good.add(pub)
    clock = Clock()
    ups = Upstreams([broken.url, good.url], [KEY.public_key()], session,
                    breaker_seconds=30, clock=clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert (await ups.narinfo(pub.hash_part)) is not None  # the second has it
    assert "skipping it for 30 s" in caplog.text
    assert sum(broken.requests.values()) == 1
    clock.now += 29
    with pytest.raises(UpstreamUnavailableError, match=r"skipped for another 1 s after: "
                                                       r".*HTTP 500"):
        await ups.narinfo(hash_part(14))
    hit = await ups.narinfo(pub.hash_part)
    assert hit is not None and hit.index == 1
    assert sum(broken.requests.values()) == 1  # no request while the breaker is open
    clock.now += 2  # breaker closed: asked again, fails again, opens again
    with pytest.raises(UpstreamUnavailableError, match="HTTP 500"):
        await ups.narinfo(hash_part(14))
    assert sum(broken.requests.values()) == 2
    broken.status = None  # recovered: a 404 is an answer, and closes the breaker
    clock.now += 31
    assert await ups.narinfo(hash_part(14)) is None
    clock.now += 1
    assert await ups.narinfo(hash_part(14)) is None
    assert sum(broken.requests.values()) == 4


async def test_bad_hash_part_raises(session: Session) -> None:
    ups = Upstreams(["http://127.0.0.1:1"], [KEY.public_key()], session)
    with pytest.raises(StorePathError):
        await ups.narinfo("../../etc/passwd")


# -- NARs ------------------------------------------------------------------------------


async def test_open_nar_streams_the_body(servers: Servers, session: Session) -> None:
    cache = await servers("/some/prefix")
    pub = publish(20)
    cache.add(pub)
    ups = Upstreams([cache.url], [KEY.public_key()], session)
    hit = await ups.narinfo(pub.hash_part)
    assert hit is not None
    assert ups.nar_url(hit.index, hit.narinfo.url) == f"{cache.url}/{pub.narinfo.url}"
    pieces = []
    async with await ups.open_nar(hit) as response:
        assert response.status == 200
        async for piece in response.content.iter_chunked(16 * 1024):
            pieces.append(piece)
    assert len(pieces) > 1
    assert b"".join(pieces) == pub.file
    stats = validate_nar(decompress(hit.narinfo.compression, pieces,
                                    max_output=hit.narinfo.nar_size))
    assert stats.nar_hash == hit.narinfo.nar_hash and stats.nar_size == hit.narinfo.nar_size


async def test_open_nar_missing_or_failing(servers: Servers, session: Session) -> None:
    cache = await servers()
    pub = publish(21)
    cache.add(pub)
    clock = Clock()
    ups = Upstreams([cache.url], [KEY.public_key()], session, clock=clock)
    hit = await ups.narinfo(pub.hash_part)
    assert hit is not None
    del cache.files[f"/{pub.narinfo.url}"]
    with pytest.raises(UpstreamUnavailableError, match="HTTP 404"):
        await ups.open_nar(hit)
    cache.files[f"/{pub.narinfo.url}"] = 503
    with pytest.raises(UpstreamUnavailableError, match="HTTP 503"):
        await ups.open_nar(hit)
    with pytest.raises(UpstreamUnavailableError, match="skipped for another"):
        await ups.open_nar(hit)
    assert cache.requests[f"/{pub.narinfo.url}"] == 2


async def test_open_nar_down_upstream(session: Session) -> None:
    url = closed_port_url()
    pub = publish(22)
    ups = Upstreams([url], [KEY.public_key()], session)
    with pytest.raises(UpstreamUnavailableError, match="ClientConnectorError"):
        await ups.open_nar(UpstreamHit(0, url, pub.narinfo, pub.text))


async def test_nar_url_rejects_unsafe_urls(session: Session) -> None:
    ups = Upstreams(["https://cache.example/sub/", "http://b.example"], [], session)
    assert ups.urls == ("https://cache.example/sub", "http://b.example")
    assert ups.nar_url(0, "nar/x.nar.xz") == "https://cache.example/sub/nar/x.nar.xz"
    assert ups.nar_url(1, "x.nar") == "http://b.example/x.nar"
    for bad in ("../x", "nar/../../x", "http://evil/x", "/x", "", "nar//x", "nar/.", "a\\b"):
        with pytest.raises(ValueError, match="narinfo URL"):
            ups.nar_url(0, bad)


def test_relative_url_problem() -> None:
    assert relative_url_problem("nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.xz") \
        is None
    assert relative_url_problem("nar/a%20b.nar") is None
    assert relative_url_problem("nar/%2fetc") is not None
    assert relative_url_problem("file:///etc/passwd") is not None
    assert relative_url_problem("nar/x\n") is not None


@pytest.mark.parametrize(
    ("urls", "timeout", "message"),
    [
        (["ftp://x"], 1.0, "not an http"),
        (["cache.example"], 1.0, "not an http"),
        (["http://x/?q=1"], 1.0, "query"),
        (["http://x"], 0.0, "timeout"),
    ],
)
async def test_constructor_checks(
    session: Session, urls: list[str], timeout: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Upstreams(urls, [], session, timeout=timeout)


# -- golden: a binary cache written by Nix 2.8 ----------------------------------------------

DRV = (
    'derivation { name = "upstream-golden"; system = builtins.currentSystem; '
    'builder = "/bin/sh"; args = ["-c" "PATH=/usr/bin:/bin; mkdir $out; '
    'head -c 200000 /dev/urandom > $out/blob; echo hi > $out/hi; ln -s hi $out/link"]; }'
)


def run_nix(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], env=env_with_nix_config(),
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{args} failed: {proc.stderr}")
    return proc.stdout.strip()


@pytest.mark.nix
@pytest.mark.parametrize("compression", ["xz", "zstd"])
async def test_golden_nix_written_cache(
    session: Session, tmp_path: Path, compression: str
) -> None:
    store_path = await asyncio.to_thread(run_nix, "nix-build", "--no-out-link", "-E", DRV)
    sk, pk = tmp_path / "sk", tmp_path / "pk"
    await asyncio.to_thread(run_nix, "nix-store", "--generate-binary-cache-key",
                            "golden-upstream-1", sk, pk)
    cache_dir = tmp_path / "cache"
    await asyncio.to_thread(run_nix, "nix", "copy", "--to",
                            f"file://{cache_dir}?compression={compression}&secret-key={sk}",
                            store_path)
    app = web.Application()
    app.router.add_static("/", cache_dir)
    async with serve_app(app) as url:
        hash_part_ = StorePath.parse(store_path).hash_part
        trusted = Upstreams([url], [PublicKey.load(pk)], session)
        hit = await trusted.narinfo(hash_part_)
        assert hit is not None
        assert hit.text == (cache_dir / f"{hash_part_}.narinfo").read_text()
        assert hit.narinfo.compression == compression
        async with await trusted.open_nar(hit) as response:
            body = [piece async for piece in response.content.iter_chunked(8192)]
        stats = validate_nar(decompress(compression, body, max_output=hit.narinfo.nar_size))
        assert stats.nar_hash == hit.narinfo.nar_hash
        assert b"".join(decompress(compression, body, max_output=hit.narinfo.nar_size)) == \
            b"".join(dump_path(store_path))
        untrusted = Upstreams([url], [KEY.public_key()], session)
        assert await untrusted.narinfo(hash_part_) is None
        # a range is forwarded and its 206 accepted (aiohttp's static files honour Range)
        async with await trusted.open_file(0, hit.narinfo.url,
                                           byte_range="bytes=7-") as response:
            assert response.status == 206
            assert await response.read() == b"".join(body)[7:]
        with pytest.raises(UpstreamUnavailableError) as missing:
            await trusted.open_file(0, f"nar/{'0' * 52}.nar.xz")
        assert missing.value.status == 404

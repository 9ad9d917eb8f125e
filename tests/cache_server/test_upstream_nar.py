"""cache_server.upstream: NARs from upstream binary caches and the URLs they may name,
against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import pytest

from cache_server.upstream import (
    UpstreamHit,
    Upstreams,
    UpstreamUnavailableError,
    relative_url_problem,
)
from nix_formats.compression import decompress
from nix_formats.nar_parser import validate_nar
from tests.support.clock import Clock

from .upstream_support import KEY, Servers, Session, closed_port_url, publish


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

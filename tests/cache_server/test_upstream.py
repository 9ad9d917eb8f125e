"""cache_server.upstream: looking narinfos up in upstream binary caches (signatures,
order, failures, the circuit breaker), against real HTTP servers on 127.0.0.1.

NARs: test_upstream_nar.py; a cache written by Nix itself: test_upstream_golden.py.
"""

from __future__ import annotations

import logging

import pytest

from cache_server.errors import CacheServerError
from cache_server.upstream import UpstreamHit, Upstreams, UpstreamUnavailableError
from nix_formats.errors import StorePathError
from nix_formats.keys import sign_narinfo
from tests.support.clock import Clock

from .upstream_support import (
    KEY,
    LOGGER,
    OTHER_KEY,
    Published,
    Servers,
    Session,
    closed_port_url,
    hash_part,
    publish,
)


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

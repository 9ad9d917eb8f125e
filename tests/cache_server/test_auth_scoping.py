"""Where credentials are checked (cache_server.auth): the middleware authenticates and
checks scopes, handlers check a prefix-limited credential against the store-path name
they have (``require_name``) before they fetch or ingest anything; argon2 runs off the
event loop; realisations go through the gateway's record lookup.

An in-process gateway app on 127.0.0.1 (no node listens: the network file names a
port nobody listens on, and record lookups are replaced where a test needs an answer),
with a fake upstream cache (:mod:`upstream_support`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from cache_server import credentials as credentials_module
from cache_server import records as records_module
from cache_server.app import create_app
from cache_server.config import ServeConfig, UploadConfig, UpstreamConfig
from cache_server.credentials import Authenticator, Credential, Scopes
from cache_server.records import Entry, RecordLookup
from cache_server.state import INGESTS
from nix_formats.keys import SecretKey
from storage_network.config import Network, NodeInfo
from storage_network.errors import NotFoundError
from storage_network.wire.write_auth import Publisher
from tests.support.clock import Clock
from tests.support.servers import serve_app

from .gateway_support import basic
from .upstream_support import KEY as UPSTREAM_KEY
from .upstream_support import FakeCache, Servers, publish

GATEWAY_KEY = SecretKey.generate("auth-scoping-1")
SCOPED, SCOPED_PASSWORD = "scoped", "scoped-pass"
PREFIX = "upstream-test-1"  # publish(1) is named upstream-test-1, publish(2) is not
DRV_OUTPUT = "sha256:" + "0" * 64 + "!out"


@asynccontextmanager
async def gateway(tmp_path: Path, upstream_url: str | None = None,
                  ) -> AsyncIterator[tuple[web.Application, str]]:
    """A gateway with read auth, uploads, a credential limited to ``PREFIX`` and (with
    ``upstream_url``) one upstream cache with ingest on: the app and its URL."""
    network = Network(nodes=(NodeInfo("node-1", "http://127.0.0.1:9"),), k=1, m=0)
    publisher = Publisher(GATEWAY_KEY.name, GATEWAY_KEY.signing_key)
    uploads = UploadConfig(publisher=publisher, nix_key=GATEWAY_KEY,
                           trusted_keys=(GATEWAY_KEY.public_key(),))
    upstream = None if upstream_url is None else UpstreamConfig(
        urls=(upstream_url,), keys=(UPSTREAM_KEY.public_key(),), ingest=True,
        publisher=publisher)
    creds = {SCOPED: Credential(SCOPED, SCOPED_PASSWORD, Scopes(True, True, (PREFIX,)))}
    config = ServeConfig(network=network, cache_dir=tmp_path / "cache", uploads=uploads,
                         upstream=upstream, credentials=creds, read_auth=True)
    app = create_app(config)
    async with serve_app(app) as url:
        yield app, url


@pytest.fixture
def absent_from_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every store path's record lookup answers "absent" (as a network without it)."""

    async def absent(self: RecordLookup, hash_part: str, *,
                     remembered_absence: bool = True) -> Entry:
        raise NotFoundError(f"no record of {hash_part}")

    monkeypatch.setattr(RecordLookup, "get", absent)


@pytest.mark.parametrize("name", ["x", DRV_OUTPUT])
async def test_a_deeply_nested_realisation_body_is_a_4xx_not_a_500(
        tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture) -> None:
    """``[`` * 100000 once reached json.loads in the middleware: RecursionError, 500."""
    async with gateway(tmp_path) as (_, url), aiohttp.ClientSession() as session:
        with caplog.at_level(logging.ERROR):
            async with session.put(f"{url}/realisations/{name}.doi", data=b"[" * 100_000,
                                   headers=basic(SCOPED, SCOPED_PASSWORD)) as resp:
                assert 400 <= resp.status < 500, await resp.text()
    assert "Traceback" not in caplog.text and "Error handling request" not in caplog.text


async def test_a_refused_upstream_path_is_not_ingested(
        tmp_path: Path, servers: Servers, absent_from_the_network: None) -> None:
    cache: FakeCache = await servers()
    inside, outside = publish(1), publish(2)
    cache.add(inside)
    cache.add(outside)
    auth = basic(SCOPED, SCOPED_PASSWORD)
    async with gateway(tmp_path, cache.url) as (app, url), \
            aiohttp.ClientSession() as session:
        for method in ("GET", "HEAD"):
            async with session.request(method, f"{url}/{outside.hash_part}.narinfo",
                                       headers=auth) as resp:
                assert resp.status == 403, await resp.text()
                if method == "GET":
                    assert f"user '{SCOPED}' may not read" in await resp.text()
            assert outside.hash_part not in app[INGESTS]
        await asyncio.sleep(0.3)  # an ingest, had one started, would have asked for the NAR
        assert cache.requests[f"/{outside.narinfo.url}"] == 0
        assert cache.requests[f"/{outside.hash_part}.narinfo"] == 2  # the name came from it
        # the same request for a path within the prefix is served and ingested
        async with session.get(f"{url}/{inside.hash_part}.narinfo", headers=auth) as resp:
            assert resp.status == 200, await resp.text()
        for _ in range(100):
            if cache.requests[f"/{inside.narinfo.url}"]:
                break
            await asyncio.sleep(0.05)
        assert cache.requests[f"/{inside.narinfo.url}"] == 1
        assert cache.requests[f"/{outside.narinfo.url}"] == 0


async def test_a_prefix_limited_credential_never_reaches_an_upstream_file(
        tmp_path: Path, servers: Servers) -> None:
    """``/upstream/...`` names no store path: refused before its handler asks anyone."""
    cache: FakeCache = await servers()
    pub = publish(1)
    cache.add(pub)
    async with gateway(tmp_path, cache.url) as (_, url), aiohttp.ClientSession() as session:
        async with session.get(f"{url}/upstream/0/{pub.narinfo.url}",
                               headers=basic(SCOPED, SCOPED_PASSWORD)) as resp:
            assert resp.status == 403
            assert "names no store path" in await resp.text()
    assert sum(cache.requests.values()) == 0


# --- argon2 off the event loop -------------------------------------------------------------


async def test_argon2_verification_runs_off_the_event_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []

    def slow_verify(secret_hash: str, password: str) -> bool:
        threads.append(threading.current_thread())
        time.sleep(0.3)  # blocks its thread: the event loop must keep running
        return password == "right"

    monkeypatch.setattr(credentials_module, "_verify", slow_verify)
    auth = Authenticator({"ci": Credential("ci", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$x")})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0)
        before = ticks
        cred = await auth.authenticate(basic("ci", "right")["Authorization"])
        during = ticks - before
    finally:
        task.cancel()
        auth.close()
    assert cred.user == "ci"
    assert threads and threads[0] is not threading.main_thread()
    assert during >= 10, during  # ~30 ticks in 0.3 s; a blocked loop makes at most 1


# --- realisations through the record lookup ------------------------------------------------


async def test_keyed_records_are_shared_and_cached_and_absences_not_remembered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[str] = []
    release = asyncio.Event()

    async def fake_fetch(net: object, key: str) -> object:
        fetched.append(key)
        await release.wait()
        if key == "absent":
            raise NotFoundError(f"no record {key}")
        return ("record", key)

    monkeypatch.setattr(records_module, "fetch_record", fake_fetch)
    clock = Clock()
    lookup = RecordLookup(object(), negative_ttl=5.0, clock=clock)  # type: ignore[arg-type]
    waiting = [asyncio.ensure_future(lookup.record("held")) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert {await w for w in waiting} == {("record", "held")}  # type: ignore[comparison-overlap]
    assert fetched == ["held"]  # one lookup for the five
    assert await lookup.record("held") == ("record", "held")  # type: ignore[comparison-overlap]
    assert fetched == ["held"]  # a hit is cached
    # a realisation committed through another gateway is served at once (as before the
    # lookup was cached): an absence is asked again every time, whatever negative_ttl
    for _ in range(2):
        with pytest.raises(NotFoundError):
            await lookup.record("absent")
    assert fetched == ["held", "absent", "absent"]

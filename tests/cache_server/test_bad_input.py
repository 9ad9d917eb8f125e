"""Bad input never gets a 500 or a traceback: an in-process gateway app on 127.0.0.1.

No node is asked (the network file names a port nobody listens on): these
answers are made before the network is needed.  Bodies cut short are sent
over a raw socket that closes early, as a client that dies mid-upload does.
The app runs in an ``AppRunner`` set up as ``nixshard serve`` sets it up
(handlers are not cancelled when their client goes away, unlike aiohttp's
``TestServer``), with the gateway's access logger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from cache_server.app import create_app
from cache_server.config import ServeConfig, UploadConfig, UpstreamConfig
from cache_server.credentials import Credential
from cache_server.send import send_body
from http_serving.access_log import AccessLogger
from http_serving.metrics import RequestMetrics, setup
from nix_formats.keys import SecretKey
from storage_network.config import Network, NodeInfo
from storage_network.errors import ChunkUnavailableError
from storage_network.wire.write_auth import Publisher
from tests.support.servers import serve_app

from .gateway_support import PASSWORD, USER, basic, requests

KEY = SecretKey.generate("bad-input-1")
NAR_NAME = "0" * 52 + ".nar.zst"


ACCESS = "test.gateway.access"


class Served:
    """An app served on 127.0.0.1: its URL, its port and a client session."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.session = session

    def get(self, path: str) -> aiohttp.client._RequestContextManager:
        return self.session.get(self.url + path)


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[Served]:
    """Serve ``app`` as http_serving.server.serve_app does (access log included)."""
    async with serve_app(app, access_log=logging.getLogger(ACCESS),
                         access_log_class=AccessLogger) as url:
        async with aiohttp.ClientSession() as session:
            yield Served(url, session)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Served]:
    """A gateway with uploads and one upstream (nobody listens on either port)."""
    network = Network(nodes=(NodeInfo("node-1", "http://127.0.0.1:9"),), k=1, m=0)
    uploads = UploadConfig(publisher=Publisher(KEY.name, KEY.signing_key), nix_key=KEY,
                           trusted_keys=(KEY.public_key(),))
    upstream = UpstreamConfig(urls=("http://127.0.0.1:9",), keys=(KEY.public_key(),))
    config = ServeConfig(network=network, cache_dir=tmp_path / "cache", uploads=uploads,
                         upstream=upstream, credentials={USER: Credential(USER, PASSWORD)})
    async with serve(create_app(config)) as served:
        yield served


@pytest.mark.parametrize("index", ["%C2%B2", "\u00b2", "4" * 4301, "0x1", "-1", "99999"],
                         ids=["superscript-2-quoted", "superscript-2", "4301-digits", "hex",
                              "negative", "five-digits"])
async def test_bad_upstream_index_is_400(client: Served, index: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """``'²'.isdigit()`` is True and ``int('4' * 4301)`` raises: both once made a 500."""
    with caplog.at_level(logging.ERROR):
        async with client.get(f"/upstream/{index}/nar/x.nar.xz") as resp:
            assert resp.status == 400
            assert "no upstream cache number" in await resp.text()
    assert "Error handling request" not in caplog.text


async def _send_raw(client: Served, head: bytes, body: bytes) -> None:
    """Send ``head`` and ``body``, then close the connection without reading an answer."""
    _, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(head + body)
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()


async def _until(condition: object) -> None:
    for _ in range(500):  # bounded: 5 s of 10 ms steps
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the gateway never answered")


@pytest.mark.parametrize("chunked", [False, True])
async def test_truncated_nar_upload_is_400_and_stages_nothing(
        client: Served, tmp_path: Path, chunked: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    auth = basic(USER, PASSWORD)["Authorization"].encode()
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: 100000\r\n"
    head = (b"PUT /nar/" + NAR_NAME.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: " +
            auth + b"\r\n" + framing + b"\r\n")
    body = b"1000\r\n" + b"a" * 100 if chunked else b"a" * 5000
    before = requests("/nar/{file}", "PUT", 400)
    with caplog.at_level(logging.INFO):
        await _send_raw(client, head, body)
        await _until(lambda: requests("/nar/{file}", "PUT", 400) == before + 1)
    assert list((tmp_path / "cache" / "uploads").iterdir()) == []
    assert "Error handling request" not in caplog.text and "Traceback" not in caplog.text


async def test_truncated_narinfo_upload_is_400(client: Served,
                                               caplog: pytest.LogCaptureFixture) -> None:
    auth = basic(USER, PASSWORD)["Authorization"].encode()
    head = (b"PUT /" + b"0" * 32 + b".narinfo HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth +
            b"\r\nContent-Length: 500\r\n\r\n")
    before = requests("/{hash}.narinfo", "PUT", 400)
    with caplog.at_level(logging.INFO):
        await _send_raw(client, head, b"StorePath: /nix/store/")
        await _until(lambda: requests("/{hash}.narinfo", "PUT", 400) == before + 1)
    assert "body ended after 22 of 500 bytes" in caplog.text
    assert "Error handling request" not in caplog.text


# -- a failure after the headers ----------------------------------------------------------


async def test_a_failure_after_the_headers_is_logged_once_and_marked_aborted(
        caplog: pytest.LogCaptureFixture) -> None:
    """The client sees a cut 200 (never a clean end); the log has one line and no
    traceback; the access log says 200 and aborted; the aborted counter moves."""
    registry_metrics = RequestMetrics("nixshard_test_send", REGISTRY)

    async def pieces() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise ChunkUnavailableError("chunk 1 of 2: 3 of 6 shards reachable, 4 needed")

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "2000"})
        return await send_body(request, resp, pieces(), "nar/test")

    app = web.Application(middlewares=[registry_metrics.middleware()])
    setup(app, registry_metrics)
    app.router.add_get("/nar/{file}", handler)
    with caplog.at_level(logging.INFO):
        async with serve(app) as client:
            async with client.get("/nar/x") as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):  # cut short, never a clean end
                    await resp.read()
            await _until(lambda: "aborted" in caplog.text)
    assert REGISTRY.get_sample_value("nixshard_test_send_aborted_total",
                                     {"route": "/nar/{file}"}) == 1
    assert REGISTRY.get_sample_value(
        "nixshard_test_send_requests_total",
        {"route": "/nar/{file}", "method": "GET", "status": "200"}) == 1
    access_lines = [r.getMessage() for r in caplog.records if r.name == ACCESS]
    assert len(access_lines) == 1 and " 200 " in access_lines[0]
    assert access_lines[0].endswith("aborted (source failed)")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "nar/test: aborting the transfer after 1000 bytes: chunk 1 of 2: 3 of 6 shards "
        "reachable, 4 needed"]
    assert all(r.exc_info is None for r in caplog.records)
    assert "Error handling request" not in caplog.text

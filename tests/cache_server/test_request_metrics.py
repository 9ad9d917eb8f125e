"""The gateway's request metrics, on an in-process gateway app (no node is asked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cache_server.app import create_app
from cache_server.config import ServeConfig
from cache_server.credentials import Credential
from http_serving.metrics import CONTENT_TYPE
from storage_network.config import Network, NodeInfo
from tests.support.metrics import sample

from .gateway_support import PASSWORD, USER, basic, requests


def timed(route: str, method: str) -> float:
    return sample("nixshard_gateway_request_seconds_count", route=route, method=method)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    """A gateway app with reads behind auth, over a network nobody listens on."""
    network = Network(nodes=(NodeInfo("node-1", "http://127.0.0.1:9"),), k=1, m=0)
    config = ServeConfig(network=network, cache_dir=tmp_path / "cache",
                         credentials={USER: Credential(USER, PASSWORD)}, read_auth=True)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


async def test_auth_refusals_are_counted_with_401(client: TestClient) -> None:
    route = "/nix-cache-info"
    before_get, before_put = requests(route, "GET", 401), requests(route, "PUT", 401)
    before_timed = timed(route, "GET")
    resp = await client.get(route)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
    resp = await client.put(route, data=b"StoreDir: /nix/store\n",
                            headers=basic(USER, "wrong"))
    assert resp.status == 401
    assert requests(route, "GET", 401) == before_get + 1
    assert requests(route, "PUT", 401) == before_put + 1
    assert timed(route, "GET") == before_timed + 1
    ok = requests(route, "GET", 200)
    assert (await client.get(route, headers=basic(USER, PASSWORD))).status == 200
    assert requests(route, "GET", 200) == ok + 1


async def test_apps_of_one_process_share_the_metrics(client: TestClient,
                                                     tmp_path: Path) -> None:
    """A second app in the process counts into the same (default) registry."""
    network = Network(nodes=(NodeInfo("node-1", "http://127.0.0.1:9"),), k=1, m=0)
    config = ServeConfig(network=network, cache_dir=tmp_path / "other")
    before = requests("/healthz", "GET", 200)
    async with TestClient(TestServer(create_app(config))) as other:
        assert (await other.get("/healthz")).status == 200
    assert (await client.get("/healthz")).status == 200
    assert requests("/healthz", "GET", 200) == before + 2


async def test_metrics_are_the_classic_text_format(client: TestClient) -> None:
    resp = await client.get("/metrics", headers=basic(USER, PASSWORD))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    text = await resp.text()
    assert "# TYPE nixshard_gateway_requests_total counter" in text
    assert "nixshard_gateway_bytes_sent_total{" in text

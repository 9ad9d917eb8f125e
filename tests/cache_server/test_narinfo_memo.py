"""The narinfo route's answers from memory (RecordLookup.cached and remembered_absence):
the same answers, headers and metrics as from the network, without asking it again.

An in-process gateway app (no node listens); the network lookup behind
:class:`~cache_server.records.RecordLookup` is replaced by a counting fake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from cache_server import records as records_module
from cache_server.app import create_app
from cache_server.config import ServeConfig
from cache_server.records import Entry, RecordLookup
from http_serving.metrics import aborted, mark_aborted
from storage_network.config import Network, NodeInfo
from storage_network.errors import NotFoundError
from tests.support.clock import Clock
from tests.support.metrics import sample

from .gateway_support import requests
from .upstream_support import hash_part, publish

ROUTE = "/{hash}.narinfo"
PRESENT = publish(1)
ABSENT = hash_part(2)


class FakeNetwork:
    """Answers record lookups: PRESENT's entry, NotFoundError for anything else."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def lookup(self, hash_part: str) -> Entry:
        self.asked.append(hash_part)
        if hash_part != PRESENT.hash_part:
            raise NotFoundError(f"no record of {hash_part}")
        return Entry(None, PRESENT.narinfo, PRESENT.text, "key")  # type: ignore[arg-type]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNetwork:
    network = FakeNetwork()

    async def lookup(_: RecordLookup, hash_part: str) -> Entry:
        return await network.lookup(hash_part)

    monkeypatch.setattr(records_module.RecordLookup, "_lookup", lookup)
    return network


@pytest.fixture
async def client(tmp_path: Path, fake: FakeNetwork) -> AsyncIterator[TestClient]:
    network = Network(nodes=(NodeInfo("node-1", "http://127.0.0.1:9"),), k=1, m=0)
    config = ServeConfig(network=network, cache_dir=tmp_path / "cache", negative_ttl=60.0)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


async def test_a_hit_from_memory_is_the_answer_from_the_network(
        client: TestClient, fake: FakeNetwork) -> None:
    url = f"/{PRESENT.hash_part}.narinfo"
    before_ok, before_head = requests(ROUTE, "GET", 200), requests(ROUTE, "HEAD", 200)
    sent = sample("nixshard_gateway_bytes_sent_total", route=ROUTE)
    answers = []
    for _ in range(3):
        resp = await client.get(url)
        answers.append((resp.status, resp.headers["Content-Type"], await resp.read()))
    assert fake.asked == [PRESENT.hash_part]  # then from memory
    expected = web.Response(text=PRESENT.text, content_type="text/x-nix-narinfo")
    assert answers == [(200, expected.headers["Content-Type"], PRESENT.text.encode())] * 3
    head = await client.head(url)
    assert head.status == 200 and head.headers["Content-Length"] == str(len(PRESENT.text))
    assert await head.read() == b""
    assert requests(ROUTE, "GET", 200) == before_ok + 3
    assert requests(ROUTE, "HEAD", 200) == before_head + 1
    assert sample("nixshard_gateway_bytes_sent_total", route=ROUTE) == \
        sent + 3 * len(PRESENT.text)  # HEAD sends no body


async def test_a_remembered_absence_is_the_first_404_again(
        client: TestClient, fake: FakeNetwork) -> None:
    before = requests(ROUTE, "GET", 404)
    answers = []
    for _ in range(3):
        resp = await client.get(f"/{ABSENT}.narinfo")
        answers.append((resp.status, resp.headers["Content-Type"], await resp.text()))
    assert fake.asked == [ABSENT]
    assert answers == [(404, "text/plain; charset=utf-8",
                        f"error: no record of {ABSENT}\n")] * 3
    assert requests(ROUTE, "GET", 404) == before + 3


async def test_a_bad_hash_is_refused_before_any_lookup(
        client: TestClient, fake: FakeNetwork) -> None:
    resp = await client.get(f"/{'e' * 32}.narinfo")  # 'e' is not in the nix32 alphabet
    assert resp.status == 400 and "illegal base-32 character 'e'" in await resp.text()
    assert fake.asked == []


async def test_the_memo_without_the_network(fake: FakeNetwork) -> None:
    clock = Clock()
    lookup = RecordLookup(object(), negative_ttl=5.0, clock=clock)  # type: ignore[arg-type]
    assert lookup.cached(PRESENT.hash_part) is None
    assert lookup.remembered_absence(ABSENT) is None
    entry = await lookup.get(PRESENT.hash_part)
    assert lookup.cached(PRESENT.hash_part) is entry
    assert entry.body == PRESENT.text.encode()
    with pytest.raises(NotFoundError) as raised:
        await lookup.get(ABSENT)
    assert lookup.remembered_absence(ABSENT) == str(raised.value)
    clock.now += 5.1  # expired: forgotten, the network must be asked again
    assert lookup.remembered_absence(ABSENT) is None
    with pytest.raises(NotFoundError):
        await lookup.get(ABSENT)
    lookup.forget(PRESENT.hash_part)
    assert lookup.cached(PRESENT.hash_part) is None
    assert fake.asked == [PRESENT.hash_part, ABSENT, ABSENT]


def test_an_abort_reason_is_kept_without_request_metrics() -> None:
    request = make_mocked_request("GET", "/x")
    assert aborted(request) is None
    mark_aborted(request, "network")
    mark_aborted(request, "client gone")  # the first reason stays
    assert aborted(request) == "network"

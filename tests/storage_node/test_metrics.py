"""``GET /metrics`` of an in-process node, and the access log of ``nixshard node``."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from http_serving.access_log import AccessLogger
from nixshard.config_file import config_keys
from storage_network.wire.write_auth import Publisher
from storage_node import cli
from storage_node.app import create_app
from storage_node.appkeys import STORE
from storage_node.config import NodeConfig

from .samples import record, record_key, signed_headers, stripe

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: TestClient) -> Samples:
    return (await scrape_sized(client))[0]


async def scrape_sized(client: TestClient) -> tuple[Samples, int]:
    """The node's samples, and the body bytes of the answer that carried them."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    body = await resp.read()
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out, len(body)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    """The sum of ``name`` over all its label values."""
    return sum(v for (n, _), v in samples.items() if n == name)


def requests(samples: Samples, route: str, method: str, status: int) -> float:
    return value(samples, "nixshard_node_requests_total", route=route, method=method,
                 status=str(status))


def timed(samples: Samples, route: str, method: str) -> float:
    return value(samples, "nixshard_node_request_seconds_count", route=route, method=method)


async def put_shard(client: TestClient, publisher: Publisher, sid: str,
                    body: bytes) -> aiohttp.ClientResponse:
    path = f"/shards/{sid}"
    return await client.put(path, data=body, headers=signed_headers(publisher, "PUT", path, body))


async def test_requests_are_counted_by_route_pattern_method_and_status(
        client: TestClient, publisher: Publisher) -> None:
    (sid, body), (absent, _) = stripe(n=2)
    before, answered = await scrape_sized(client)  # its answer is counted once sent
    answers = [await put_shard(client, publisher, sid, body),
               await put_shard(client, publisher, sid, body),
               *[await client.get(f"/shards/{sid}") for _ in range(3)],
               await client.get(f"/shards/{absent}"),
               await client.get("/shards/not-an-id"),
               await client.get("/no/such/route")]
    assert [r.status for r in answers] == [201, 200, 200, 200, 200, 404, 400, 404]
    for resp in answers:
        answered += len(await resp.read())
    after = await scrape(client)

    shard = "/shards/{id}"
    moved = {
        (shard, "PUT", 201): 1, (shard, "PUT", 200): 1, (shard, "GET", 200): 3,
        (shard, "GET", 404): 1, (shard, "GET", 400): 1, ("unmatched", "GET", 404): 1,
    }
    for (route, method, status), delta in moved.items():
        assert requests(after, route, method, status) - requests(before, route, method,
                                                                  status) == delta
    assert timed(after, shard, "GET") - timed(before, shard, "GET") == 5
    assert timed(after, shard, "PUT") - timed(before, shard, "PUT") == 2
    # the previous scrape was counted when it had been answered
    assert requests(after, "/metrics", "GET", 200) == requests(before, "/metrics", "GET", 200) + 1
    # a raw path never becomes a label value
    labels = {dict(labels).get("route") for (name, labels) in after
              if name == "nixshard_node_requests_total"}
    assert labels <= {shard, "unmatched", "/metrics"}

    sent = total(after, "nixshard_node_bytes_sent_total") - total(
        before, "nixshard_node_bytes_sent_total")
    received = value(after, "nixshard_node_bytes_received_total") - value(
        before, "nixshard_node_bytes_received_total")
    assert received == 2 * len(body)
    assert answered > 3 * len(body) and sent == answered
    shard_sent = value(after, "nixshard_node_bytes_sent_total", route=shard) - value(
        before, "nixshard_node_bytes_sent_total", route=shard)
    assert 3 * len(body) < shard_sent < answered  # the shards and the refusals' messages
    sent_labels = {dict(labels).get("route") for (name, labels) in after
                   if name == "nixshard_node_bytes_sent_total"}
    assert sent_labels <= {shard, "unmatched", "/metrics"}


async def test_head_sends_no_body_bytes(client: TestClient, publisher: Publisher) -> None:
    (sid, body), *_ = stripe(n=1, size=5000)
    assert (await put_shard(client, publisher, sid, body)).status == 201
    before, answered = await scrape_sized(client)
    resp = await client.head(f"/shards/{sid}")
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(body)
    after = await scrape(client)
    assert requests(after, "/shards/{id}", "HEAD", 200) - requests(
        before, "/shards/{id}", "HEAD", 200) == 1
    sent = total(after, "nixshard_node_bytes_sent_total") - total(
        before, "nixshard_node_bytes_sent_total")
    assert sent == answered  # the previous /metrics answer only, not the shard's 5000 bytes
    assert value(after, "nixshard_node_bytes_sent_total", route="/shards/{id}") == value(
        before, "nixshard_node_bytes_sent_total", route="/shards/{id}")
    assert value(after, "nixshard_node_bytes_sent_total", route="/metrics") - value(
        before, "nixshard_node_bytes_sent_total", route="/metrics") == answered


async def test_streamed_listing_counts_what_was_written(client: TestClient,
                                                       publisher: Publisher) -> None:
    for sid, body in stripe(n=2):
        assert (await put_shard(client, publisher, sid, body)).status == 201
    before, answered = await scrape_sized(client)
    resp = await client.get("/shards")
    assert resp.status == 200 and "Content-Length" not in resp.headers  # chunked
    listing = await resp.read()
    assert len(listing.splitlines()) == 2
    after = await scrape(client)
    assert requests(after, "/shards", "GET", 200) - requests(before, "/shards", "GET", 200) == 1
    sent = total(after, "nixshard_node_bytes_sent_total") - total(
        before, "nixshard_node_bytes_sent_total")
    # the stream is counted as written: headers and chunk framing included
    assert answered + len(listing) < sent < answered + len(listing) + 1000
    streamed = value(after, "nixshard_node_bytes_sent_total", route="/shards") - value(
        before, "nixshard_node_bytes_sent_total", route="/shards")
    assert len(listing) < streamed < len(listing) + 1000


async def test_refusals_count_with_their_status(client: TestClient) -> None:
    (sid, body), *_ = stripe(n=1)
    before = await scrape(client)
    # no signature: refused by error_middleware (401), and on Expect: 100-continue by the
    # expect handler before any middleware runs
    assert (await client.put(f"/shards/{sid}", data=body)).status == 401
    assert (await client.put(f"/shards/{sid}", data=body, expect100=True)).status == 401
    assert (await client.patch(f"/shards/{sid}")).status == 405
    after = await scrape(client)
    assert requests(after, "/shards/{id}", "PUT", 401) - requests(
        before, "/shards/{id}", "PUT", 401) == 2
    assert timed(after, "/shards/{id}", "PUT") - timed(before, "/shards/{id}", "PUT") == 1
    assert requests(after, "unmatched", "PATCH", 405) - requests(
        before, "unmatched", "PATCH", 405) == 1


async def test_unknown_methods_share_one_label(client: TestClient) -> None:
    before = await scrape(client)
    resp = await client.request("PROPFIND", "/healthz")
    assert resp.status == 405
    after = await scrape(client)
    assert requests(after, "unmatched", "other", 405) - requests(
        before, "unmatched", "other", 405) == 1
    assert not any(dict(labels).get("method") == "PROPFIND" for _, labels in after)


async def test_gauges_match_healthz(client: TestClient, publisher: Publisher) -> None:
    for sid, body in stripe(n=3, size=700):
        assert (await put_shard(client, publisher, sid, body)).status == 201
    key = record_key()
    body = record(publisher, key)
    path = f"/records/{key}"
    resp = await client.put(path, data=body, headers=signed_headers(publisher, "PUT", path, body))
    assert resp.status == 201

    health = await (await client.get("/healthz")).json()
    samples = await scrape(client)
    assert (health["shards"], health["records"]) == (3, 1)
    assert value(samples, "nixshard_node_shards") == health["shards"]
    assert value(samples, "nixshard_node_shard_bytes") == health["shard_bytes"]
    assert value(samples, "nixshard_node_records") == health["records"]
    free = value(samples, "nixshard_node_free_bytes")
    # the filesystem is shared with other processes: equal up to what they wrote meanwhile
    assert free > 0 and abs(free - health["free_bytes"]) < 256 * 1024 * 1024


async def test_each_app_has_its_own_registry(client: TestClient, publisher: Publisher,
                                             tmp_path: Path) -> None:
    (sid, body), *_ = stripe(n=1)
    assert (await put_shard(client, publisher, sid, body)).status == 201
    other = NodeConfig(tmp_path / "other", "node-u", {publisher.name: publisher.public})
    async with TestClient(TestServer(create_app(other))) as fresh:
        samples = await scrape(fresh)
    assert value(samples, "nixshard_node_shards") == 0
    assert requests(samples, "/shards/{id}", "PUT", 201) == 0
    assert value(await scrape(client), "nixshard_node_shards") == 1


# -- the access log --------------------------------------------------------------------------

async def test_access_log_line_has_remote_request_status_bytes_and_time(
        tmp_path: Path, publisher: Publisher, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = NodeConfig(tmp_path / "data", "node-a", {publisher.name: publisher.public})
    logger = logging.getLogger(cli.ACCESS_LOGGER)
    # as the buffered logger of `nixshard node` is: its own handler, no propagation
    monkeypatch.setattr(logger, "handlers", [caplog.handler])
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "level", logging.INFO)
    server = TestServer(create_app(config))
    # the logger class web.run_app gets from `nixshard node`
    await server.start_server(access_log=logger, access_log_class=AccessLogger)
    async with TestClient(server) as c:
        (sid, _), *_ = stripe(n=1)
        assert (await c.get(f"/shards/{sid}")).status == 404
        assert (await c.get("/healthz")).status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == cli.ACCESS_LOGGER]
    assert len(lines) == 2
    assert re.fullmatch(rf'127\.0\.0\.1 "GET /shards/{re.escape(sid)} HTTP/1\.1" 404 \d+ '
                        r"\d+\.\d{6}", lines[0]), lines[0]
    assert re.fullmatch(r'127\.0\.0\.1 "GET /healthz HTTP/1\.1" 200 \d+ \d+\.\d{6}',
                        lines[1]), lines[1]


@pytest.mark.parametrize(("flag", "on"), [((), True), (("--no-access-log",), False)])
def test_node_command_turns_the_access_log_on_by_default(
        tmp_path: Path, publisher: Publisher, monkeypatch: pytest.MonkeyPatch,
        flag: tuple[str, ...], on: bool) -> None:
    seen: dict[str, Any] = {}

    def fake_run_app(app: web.Application, host: str, port: int, **kwargs: Any) -> None:
        seen.update(kwargs)
        app[STORE].close()

    monkeypatch.setattr("storage_node.cli.run_app", fake_run_app)
    result = cli.node_command.main(
        ["--data", str(tmp_path), "--accept-publisher", publisher.public.text(),
         "--node-id", "node-1", "--listen", "127.0.0.1:0", *flag], standalone_mode=False)
    assert result is None
    assert seen["access_log"] is (logging.getLogger(cli.ACCESS_LOGGER) if on else None)
    assert seen["access_log_class"] is AccessLogger


def test_access_log_is_a_config_file_key() -> None:
    assert config_keys(cli.node_command)["access_log"] == "access_log_on"

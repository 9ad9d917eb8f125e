"""Deeply nested or mistyped JSON bodies to every JSON route of a node: a 400 and one log
line without a traceback, never a 500 (``json.loads`` raises RecursionError on deep input)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from storage_network.wire.write_auth import Publisher
from storage_node.app import create_app
from storage_node.config import NodeConfig
from storage_node.faults import Faults

ROUTES = ["/shards/has", "/shards/batch-get", "/proofs"]
NONCE = "00" * 16
PAYLOADS = [
    pytest.param(b"[" * 100_000, "nested too deeply", id="deep-array"),
    pytest.param(b'{"a":' * 50_000, "nested too deeply", id="deep-object"),
    pytest.param(b'{"ids": ' + b"[" * 100_000, "nested too deeply", id="deep-ids"),
    pytest.param(b"1e999999", "", id="number"),
    pytest.param(b"null", "", id="null"),
    pytest.param(b'{"ids": {"x": 1}, "nonce": "' + NONCE.encode() + b'"}', "", id="ids-object"),
    pytest.param(b'{"ids": [[[[[["x"]]]]]], "nonce": "' + NONCE.encode() + b'"}',
                 "a JSON array, not a string", id="id-array"),
    pytest.param(b'{"ids": [' + b"1," * 800 + b'1], "nonce": "' + NONCE.encode() + b'"}',
                 "a JSON number, not a string", id="id-numbers"),
    pytest.param(b'{"ids": [null], "nonce": "' + NONCE.encode() + b'"}',
                 "a JSON null, not a string", id="id-null"),
]


def one_refusal(caplog: pytest.LogCaptureFixture, route: str) -> logging.LogRecord:
    logged = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    (line,) = logged
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert line.getMessage().startswith(f"refused POST '{route}' from 127.0.0.1: 400 ")
    return line


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("payload, message", PAYLOADS)
async def test_bad_json_is_400_with_one_log_line(client: TestClient, route: str,
                                                 payload: bytes, message: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nixshard")
    resp = await client.post(route, data=payload, headers={"Content-Type": "application/json"})
    text = await resp.text()
    assert resp.status == 400, text
    assert text.startswith("error: ") and message in text
    assert len(text) < 500  # the refusal does not echo the input
    assert message in one_refusal(caplog, route).getMessage()


@pytest.fixture
async def lying(tmp_path: Path, publisher: Publisher) -> AsyncIterator[TestClient]:
    config = NodeConfig(tmp_path / "data", "node-1", {publisher.name: publisher.public},
                        faults=Faults(lie_has=True))
    async with TestClient(TestServer(create_app(config))) as client:
        yield client


@pytest.mark.parametrize("payload, message", PAYLOADS[:4] + PAYLOADS[6:8])
async def test_bad_json_to_a_lying_has_is_400_too(lying: TestClient, payload: bytes,
                                                  message: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nixshard")
    resp = await lying.post("/shards/has", data=payload)
    assert resp.status == 400, await resp.text()
    assert message in one_refusal(caplog, "/shards/has").getMessage()

"""``/healthz`` counters, the error format, and app construction errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from storage_network.wire.write_auth import Publisher
from storage_node.app import create_app
from storage_node.config import NodeConfig
from storage_node.errors import ConfigError, DataDirError

from .samples import T0, chunk_refs, record, record_key, signed_headers, stripe


async def test_healthz_counts_move(client: TestClient, publisher: Publisher) -> None:
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["node_id"] == "node-1"
    assert (health["shards"], health["shard_bytes"], health["records"]) == (0, 0, 0)
    assert health["free_bytes"] > 0

    shards = stripe(n=2)
    for sid, body in shards + shards[:1]:
        path = f"/shards/{sid}"
        await client.put(path, data=body, headers=signed_headers(publisher, "PUT", path, body))
    key, refs = record_key(), chunk_refs()
    for created in (T0, T0 + 1):
        body = record(publisher, key, refs=refs, created=created)
        path = f"/records/{key}"
        resp = await client.put(path, data=body,
                                headers=signed_headers(publisher, "PUT", path, body))
        assert resp.status in (200, 201)
    health = await (await client.get("/healthz")).json()
    assert health["shards"] == 2
    assert health["shard_bytes"] == sum(len(b) for _, b in shards)
    assert health["records"] == 1


async def test_unknown_route_and_method_answer_in_the_error_format(client: TestClient) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404 and await resp.text() == "error: not found"
    resp = await client.patch(f"/shards/{stripe()[0][0]}")
    assert resp.status == 405 and await resp.text() == "error: method not allowed"
    assert "PUT" in resp.headers["Allow"]


def test_create_app_refuses_no_publishers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no publisher key"):
        create_app(NodeConfig(tmp_path, "node-1", {}))


@pytest.mark.parametrize("node_id", ["no/slashes", "", "-dash-first", "node-1\n", "x" * 65])
def test_create_app_refuses_bad_node_id(tmp_path: Path, publisher: Publisher,
                                        node_id: str) -> None:
    with pytest.raises(ConfigError, match="node id"):
        create_app(NodeConfig(tmp_path, node_id, {publisher.name: publisher.public}))


async def test_data_dir_is_locked_while_a_node_uses_it(client: TestClient, data_dir: Path,
                                                       publisher: Publisher) -> None:
    with pytest.raises(DataDirError, match="in use by another node"):
        create_app(NodeConfig(data_dir, "node-2", {publisher.name: publisher.public}))


def test_unusable_data_dir_is_a_data_dir_error(tmp_path: Path, publisher: Publisher) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(DataDirError, match="data dir"):
        create_app(NodeConfig(tmp_path / "file" / "data", "n", {publisher.name: publisher.public}))

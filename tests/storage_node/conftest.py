"""Fixtures of the storage-node tests: publishers and an in-process node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from nixshard.localnet import new_publisher
from storage_network.wire.write_auth import Publisher
from storage_node.app import create_app
from storage_node.config import NodeConfig

MAX_SHARD = 64 * 1024
MAX_RECORD = 32 * 1024


@pytest.fixture(scope="session")
def publisher() -> Publisher:
    """The publisher every test node accepts."""
    return new_publisher("test-publisher-1")[0]


@pytest.fixture(scope="session")
def stranger() -> Publisher:
    """A publisher no test node accepts."""
    return new_publisher("stranger-1")[0]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def client(data_dir: Path, publisher: Publisher) -> AsyncIterator[TestClient]:
    """An in-process node (caps: 64 KiB shards, 32 KiB records) and a client for it."""
    config = NodeConfig(data_dir, "node-1", {publisher.name: publisher.public},
                        max_shard_bytes=MAX_SHARD, max_record_bytes=MAX_RECORD)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c

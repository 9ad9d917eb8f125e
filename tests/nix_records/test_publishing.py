"""Store, check, publish against real nodes: the record is written last, and only when the
check passes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from nix_records import RecordContent, StoredPayload, publish, store, store_then_publish
from nixshard.localnet import LocalNetwork
from storage_network import NetworkClient, NotFoundError, fetch_record
from tests.storage_network.conftest import payload, record_key, running_network


class CheckFailed(Exception):
    pass


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with running_network(tmp_path_factory.mktemp("publishing")) as net:
        yield net


def client(local: LocalNetwork) -> NetworkClient:
    assert local.network is not None
    return NetworkClient(local.network)


def pieces(data: bytes, size: int = 10_000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_store_then_publish_writes_the_record_the_check_returns(local: LocalNetwork) -> None:
    data = payload(1, 150_000)
    content = RecordContent(record_key(1), b"metadata of seed 1")
    seen: list[StoredPayload] = []

    def check(stored: StoredPayload) -> RecordContent:
        seen.append(stored)
        return content

    async def run() -> None:
        async with client(local) as net:
            stored, size = await store_then_publish(net, local.publisher, pieces(data), check)
            assert seen == [stored] and size > 0
            assert stored.manifest.size == len(data) and stored.stats.touched_at is not None
            got = await fetch_record(net, content.key)
            assert got.metadata == content.metadata and got.manifest == stored.manifest

    asyncio.run(run())


def test_a_failed_check_publishes_nothing(local: LocalNetwork) -> None:
    def check(stored: StoredPayload) -> RecordContent:
        raise CheckFailed(f"{stored.manifest.size} bytes, not what was promised")

    async def run() -> None:
        async with client(local) as net:
            with pytest.raises(CheckFailed, match="150000 bytes"):
                await store_then_publish(net, local.publisher, pieces(payload(2, 150_000)),
                                         check)
            with pytest.raises(NotFoundError):
                await fetch_record(net, record_key(2))

    asyncio.run(run())


def test_store_and_publish_in_two_steps(local: LocalNetwork) -> None:
    data = payload(3, 40_000)

    async def run() -> None:
        async with client(local) as net:
            stored = await store(net, local.publisher, [data])
            with pytest.raises(NotFoundError):
                await fetch_record(net, record_key(3))
            await publish(net, local.publisher, RecordContent(record_key(3), b"m3"), stored)
            assert (await fetch_record(net, record_key(3))).manifest == stored.manifest

    asyncio.run(run())

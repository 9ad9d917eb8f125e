"""Record lookup by quorum of the window (docs/consistency.md, "Records"), on real nodes.

Six nodes, k=4, m=2, R=3: the window of a key is the first 5 nodes of its
record ranking.  A stale replica is made the way a restored backup would
make it: its record file is overwritten with an older, validly signed
version (the node serves what its disk holds).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.client import NetworkClient
from storage_network.config import NodeInfo
from storage_network.errors import NotFoundError, RecordUnavailableError
from storage_network.nodes.placement import record_nodes
from storage_network.read.record_lookup import fetch_record
from storage_network.read.record_memory import RecordMemory
from storage_network.wire.manifest import Manifest
from storage_network.wire.record import seal_record, seal_tombstone
from storage_network.write.publish import store_payload

from ..conftest import K, M, payload, record_key

R = 3


def window(local: LocalNetwork, key: str) -> list[NodeInfo]:
    assert local.network is not None and local.network.record_replicas == R
    return record_nodes(local.network.nodes, key)[:R + M]


def record_file(local: LocalNetwork, node: NodeInfo, key: str) -> Path:
    return local.root / node.id / "records" / key


def reader(local: LocalNetwork, repair: bool = False) -> NetworkClient:
    assert local.network is not None
    if repair:
        return NetworkClient(local.network, timeout=30.0, repairer=local.publisher)
    return NetworkClient(local.network, timeout=30.0)


@pytest.fixture
async def manifest(live_net: LocalNetwork) -> AsyncIterator[Manifest]:
    async with reader(live_net) as net:
        stored, _ = await store_payload(net, live_net.publisher, [payload(40, 20_000)])
    yield stored


class Versions:
    """Two validly signed versions of one key's record (same payload), v1 older."""

    def __init__(self, local: LocalNetwork, key: str, manifest: Manifest) -> None:
        now = int(time.time())
        self.v1 = seal_record(local.publisher, key, b"v1", manifest, created=now - 100)
        self.v2 = seal_record(local.publisher, key, b"v2", manifest, created=now)
        self.tombstone = seal_tombstone(local.publisher, key, manifest.codec, K, M,
                                        created=now + 1)


async def put(local: LocalNetwork, nodes: list[NodeInfo], key: str, data: bytes) -> None:
    async with reader(local) as net:
        for node in nodes:
            assert await net.nodes[node.id].put_record(key, data, local.publisher) in (200, 201)


async def test_a_stale_top_ranked_replica_does_not_roll_the_record_back(
        live_net: LocalNetwork, manifest: Manifest) -> None:
    key = record_key(41)
    versions, win = Versions(live_net, key, manifest), window(live_net, key)
    await put(live_net, win[:R], key, versions.v2)
    record_file(live_net, win[0], key).write_bytes(versions.v1)  # the first node is stale
    async with reader(live_net) as plain:
        assert (await fetch_record(plain, key)).metadata == b"v2"
    assert record_file(live_net, win[0], key).read_bytes() == versions.v1
    async with reader(live_net, repair=True) as net:
        assert (await fetch_record(net, key)).metadata == b"v2"
        await net.background.idle()
    # read repair gave the stale replica the newest version
    assert record_file(live_net, win[0], key).read_bytes() == versions.v2


async def test_a_tombstone_on_two_replicas_hides_the_old_record_on_the_third(
        live_net: LocalNetwork, manifest: Manifest) -> None:
    key = record_key(42)
    versions, win = Versions(live_net, key, manifest), window(live_net, key)
    await put(live_net, win[:R], key, versions.v1)
    await put(live_net, win[1:R], key, versions.tombstone)  # gc missed the first node
    async with reader(live_net) as net:
        with pytest.raises(NotFoundError, match=f"record {key}: deleted"):
            await fetch_record(net, key)


async def test_a_reader_never_goes_back_to_an_older_version(
        live_net: LocalNetwork, manifest: Manifest) -> None:
    key = record_key(43)
    versions, win = Versions(live_net, key, manifest), window(live_net, key)
    await put(live_net, win[:R], key, versions.v2)
    async with reader(live_net) as keeps, reader(live_net) as forgets:
        forgets.records = RecordMemory(records=0)  # versions only, no Record kept
        assert (await fetch_record(keeps, key)).metadata == b"v2"
        assert (await fetch_record(forgets, key)).metadata == b"v2"
        for node in win[:R]:  # every replica rolled back
            record_file(live_net, node, key).write_bytes(versions.v1)
        assert (await fetch_record(keeps, key)).metadata == b"v2"
        with pytest.raises(RecordUnavailableError,
                           match=f"record {key}: the nodes answered a version created "
                                 r"\d+, older than the version created \d+ this client has "
                                 r"seen \(and no longer holds\)"):
            await fetch_record(forgets, key)
        other = new_publisher("someone-else-1")[0]  # what it remembers is not other keys'
        with pytest.raises(NotFoundError, match=f"record {key}: absent on 3 of the 3 "):
            await fetch_record(keeps, key, trusted={other.name: other.public})
    async with reader(live_net) as fresh:  # a reader that never saw v2 takes v1
        assert (await fetch_record(fresh, key)).metadata == b"v1"


async def test_read_repair_copies_the_record_to_replicas_that_lack_it(
        live_net: LocalNetwork, manifest: Manifest) -> None:
    key = record_key(44)
    versions, win = Versions(live_net, key, manifest), window(live_net, key)
    await put(live_net, win[:1], key, versions.v2)  # two replicas missed the write
    async with reader(live_net) as plain:
        assert (await fetch_record(plain, key)).metadata == b"v2"
        assert len(plain.background) == 0
    assert not record_file(live_net, win[1], key).exists()
    async with reader(live_net, repair=True) as net:
        assert (await fetch_record(net, key)).metadata == b"v2"
        await net.background.idle()
    for node in win[:R]:
        assert record_file(live_net, node, key).read_bytes() == versions.v2
    for node in win[R:]:
        assert not record_file(live_net, node, key).exists()

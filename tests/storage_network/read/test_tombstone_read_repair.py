"""Read repair and key roles: a tombstone the nodes would refuse is not sent.

The nodes of ``live_net`` list no maintainers (every publisher may delete);
the reader's network file gives the maintainer role to another key, so by
its roles the publisher's tombstone is neither sealed nor sent by a
maintainer: read repair skips it, and every node keeps its good standing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import pytest

from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.client import NetworkClient
from storage_network.errors import NotFoundError
from storage_network.nodes.health import Standing
from storage_network.read.record_lookup import fetch_record
from storage_network.wire.manifest import Manifest
from storage_network.wire.record import seal_record, seal_tombstone
from storage_network.write.publish import store_payload

from ..conftest import K, M, payload, record_key
from .test_record_lookup import R, put, reader, record_file, window


@pytest.fixture
async def manifest(live_net: LocalNetwork) -> AsyncIterator[Manifest]:
    async with reader(live_net) as net:
        stored, _ = await store_payload(net, live_net.publisher, [payload(50, 20_000)])
    yield stored


def roles_reader(local: LocalNetwork) -> NetworkClient:
    """A repairing reader whose network file makes another key the only maintainer."""
    assert local.network is not None
    maintainer = new_publisher("ops-maint-7")[0]
    network = dataclasses.replace(
        local.network, publishers={**local.network.publishers,
                                   maintainer.name: maintainer.public},
        maintainers=frozenset({maintainer.name}))
    assert not network.may_delete(local.publisher.name)
    return NetworkClient(network, timeout=30.0, repairer=local.publisher)


async def test_read_repair_sends_no_tombstone_the_nodes_would_refuse(
        live_net: LocalNetwork, manifest: Manifest) -> None:
    key = record_key(51)
    win, now = window(live_net, key), int(time.time())
    record = seal_record(live_net.publisher, key, b"v1", manifest, created=now - 100)
    stone = seal_tombstone(live_net.publisher, key, manifest.codec, K, M, created=now)
    await put(live_net, win[:R], key, record)
    await put(live_net, win[:1], key, stone)  # the deletion reached one replica only
    async with roles_reader(live_net) as net:
        with pytest.raises(NotFoundError, match=f"record {key}: deleted"):
            await fetch_record(net, key)
        assert len(net.background) == 0  # no repair started
        await net.background.idle()
        assert all(net.health.standing(node.id) is Standing.GOOD for node in win)
    for node in win[1:R]:
        assert record_file(live_net, node, key).read_bytes() == record
    # by the network file the nodes run on, the publisher may delete: it is copied
    async with reader(live_net, repair=True) as net:
        with pytest.raises(NotFoundError, match=f"record {key}: deleted"):
            await fetch_record(net, key)
        await net.background.idle()
        assert all(net.health.standing(node.id) is Standing.GOOD for node in win)
    for node in win[:R]:
        assert record_file(live_net, node, key).read_bytes() == stone

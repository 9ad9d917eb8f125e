"""A node run from a network map takes each newer epoch's publisher keys and quotas
without a restart (storage_node.map_follow); real node processes."""

from __future__ import annotations

import os

import pytest

from nixshard.localnet import new_publisher
from storage_network.client import NetworkClient
from storage_network.errors import QuotaExceededError, StorageNetworkError
from storage_network.write.publish import store_payload

from .conftest import Cluster, put, served_epoch, wait_until
from .maps import next_epoch, sign


async def test_a_new_publisher_and_its_quota_apply_with_the_next_epoch(
        cluster: Cluster, started) -> None:
    path = cluster.write("epoch1.json", cluster.epoch1)
    nodes = started([cluster.node(i, path) for i in range(3)])
    newcomer = new_publisher("pub-2")[0]
    data = os.urandom(50_000)
    async with NetworkClient(cluster.epoch1.network, timeout=10) as net:
        with pytest.raises(StorageNetworkError):  # not a key of epoch 1: refused
            await store_payload(net, newcomer, [data])
    k = cluster.keys
    epoch2 = sign(next_epoch(cluster.epoch1, publishers=(newcomer.public,),
                             quotas={newcomer.name: 10**9}), k[0], k[1])
    assert put(nodes[0].url, epoch2).status_code == 201
    wait_until(lambda: all(served_epoch(n.url) == 2 for n in nodes), "every node at epoch 2")
    async with NetworkClient(epoch2.network, timeout=10) as net:
        manifest, _ = await store_payload(net, newcomer, [data])
        assert manifest.chunks
    epoch3 = sign(next_epoch(epoch2, quotas={newcomer.name: 1}), k[0], k[1])
    assert put(nodes[0].url, epoch3).status_code == 201
    wait_until(lambda: all(served_epoch(n.url) == 3 for n in nodes), "every node at epoch 3")
    async with NetworkClient(epoch3.network, timeout=10) as net:
        with pytest.raises(QuotaExceededError, match="quota"):
            await store_payload(net, newcomer, [os.urandom(50_000)])

"""Programs start from a network file, a signed map or a bootstrap file, and a client of a
network from a map follows newer epochs while it runs (real nodes)."""

from __future__ import annotations

import asyncio
import time

import pytest

from storage_network.client import NetworkClient
from storage_network.errors import MapError
from storage_network.network_map.source import open_network

from .conftest import WAIT_SECONDS, Cluster, put
from .maps import next_epoch, sign


async def test_a_client_follows_the_next_epoch_without_a_restart(
        cluster: Cluster, started) -> None:
    path = cluster.write("epoch1.json", cluster.epoch1)
    nodes = started([cluster.node(i, path) for i in range(3)])
    boot = cluster.root / "bootstrap.toml"
    boot.write_text(cluster.bootstrap.to_toml())
    network = await open_network(boot, every=0.2)
    assert network.follow is not None and network.follow.trusted.epoch == 1
    assert network.k == 2
    async with NetworkClient(network) as net:
        k = cluster.keys
        epoch2 = sign(next_epoch(cluster.epoch1, k=1), k[1], k[2])
        assert put(nodes[0].url, epoch2).status_code == 201
        deadline = time.monotonic() + WAIT_SECONDS
        while net.network.k != 1:
            if time.monotonic() > deadline:
                pytest.fail(f"the client did not take epoch 2 within {WAIT_SECONDS} s")
            await asyncio.sleep(0.1)
        assert net.network.follow is not None and net.network.follow.trusted.epoch == 2
    # a program started now from the old map file gets epoch 2 at once
    assert (await open_network(path)).k == 1


async def test_a_bootstrap_file_with_no_node_serving_a_map_is_refused(
        cluster: Cluster) -> None:
    boot = cluster.root / "bootstrap.toml"
    boot.write_text(cluster.bootstrap.to_toml())  # no node started
    with pytest.raises(MapError):
        await open_network(boot, timeout=2)


async def test_a_network_file_is_read_as_before(cluster: Cluster) -> None:
    from storage_network.config import write_network
    path = cluster.root / "network.toml"
    write_network(cluster.epoch1.network, path)
    network = await open_network(path)
    assert network.follow is None and network == cluster.epoch1.network

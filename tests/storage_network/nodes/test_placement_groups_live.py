"""Placement groups on real node processes: 10 nodes of 5 operators (one draining), 4-of-6.

A push puts every shard at its group home and none on the draining node; losing
every node of one operator loses nothing; repair puts no shard on the draining node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork
from storage_network.client import NetworkClient
from storage_network.config import Network
from storage_network.nodes.placement import chunk_homes
from storage_network.read.locate import locate_shards
from storage_network.upkeep.repair import repair_network
from storage_network.wire.stripe import shard_id
from storage_network.write.publish import publish_record, store_payload
from tests.support.network import running_network
from tests.support.reads import read_back
from tests.support.records import payload, record_key

OPERATORS = ["a", "a", "b", "b", "c", "c", "d", "d", "e", "e"]
DRAINING = "node-10"


@pytest.fixture
def net10(tmp_path: Path) -> Iterator[LocalNetwork]:
    with running_network(tmp_path / "net", 10) as local:
        yield local


def groups_network(local: LocalNetwork) -> Network:
    """``local``'s network under placement groups, with operators; node-10 draining."""
    assert local.network is not None
    nodes = tuple(dataclasses.replace(node, operator=op,
                                      state="draining" if node.id == DRAINING else "active")
                  for node, op in zip(local.network.nodes, OPERATORS, strict=True))
    return dataclasses.replace(local.network, nodes=nodes, placement="groups")


def shards_on(local: LocalNetwork, node_id: str) -> set[str]:
    folder = local.root / node_id / "shards"
    return {p.name for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


async def test_push_read_and_repair_under_placement_groups(net10: LocalNetwork) -> None:
    network = groups_network(net10)
    data = payload(41, 300_000)
    async with NetworkClient(network, timeout=10) as net:
        manifest, _ = await store_payload(net, net10.publisher, [data])
        await publish_record(net, net10.publisher, record_key(41), b"meta", manifest)
    assert len(manifest.chunks) > 5
    for ref in manifest.chunks:
        homes = chunk_homes(network, ref.chunk_id, manifest.n)
        assert DRAINING not in [h.id for h in homes]
        for index, home in enumerate(homes):
            assert shard_id(ref.root, index) in shards_on(net10, home.id)
    assert not shards_on(net10, DRAINING)

    for proc in net10.nodes[:2]:  # every node of operator a
        proc.kill()
    async with NetworkClient(network, timeout=10) as net:
        assert await read_back(net, manifest) == data
        report = await repair_network(net, net10.publisher)
        assert report.complete and report.shards_written > 0, report.to_json()
        found = await locate_shards(net, manifest.chunks, manifest.k, manifest.m)
        assert [len(have) for have in found.holders] == [manifest.n] * len(manifest.chunks)
    assert not shards_on(net10, DRAINING)

"""push, audit, repair and gc against a hostile node: each finishes and names the node.

Seven real nodes (4-of-6); node-2 sits behind the chaos proxy
(:mod:`tests.chaos.proxy`), which makes it answer with endless bodies,
JSON nested 100,000 deep, 1,000 bytes a second, flipped shard bytes, or
not at all.  Every operation runs with a 3 s node timeout, must end without
an exception, and must report node-2 (benched, passed over, unreachable or
failed), while the data stays readable from the other nodes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from nixshard.localnet import LocalNetwork, ManagedProcess, free_port, new_publisher
from storage_network.client import NetworkClient
from storage_network.config import Network, NodeInfo
from storage_network.upkeep.audit import audit_network
from storage_network.upkeep.gc import collect_garbage
from storage_network.upkeep.repair import repair_network
from storage_network.write.publish import publish_record, store_payload
from tests.chaos.proxy import proxy_process, set_mode
from tests.support.records import scanned

from ..conftest import payload, read_back, record_key, running_network

HOSTILE = "node-2"
MODES = ("endless", "deep-json", "trickle", "stall", "flip", "down")


@dataclass
class Proxied:
    """The network with node-2 behind the proxy, and how to switch its mode."""

    local: LocalNetwork
    network: Network
    proxy: ManagedProcess
    port: int

    def mode(self, mode: str) -> None:
        set_mode(self.proxy, self.port, mode)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    root = tmp_path_factory.mktemp("hostile")
    with running_network(root, 7, new_publisher("hostile-1")[0]) as local:
        assert local.network is not None
        number = int(HOSTILE.split("-")[1])
        port = free_port()
        with proxy_process(root / "proxy.log", free_port(),
                           {port: local.nodes[number - 1].url}) as proxy:
            nodes = tuple(NodeInfo(n.id, f"http://127.0.0.1:{port}") if n.id == HOSTILE else n
                          for n in local.network.nodes)
            network = Network(**{**local.network.__dict__, "nodes": nodes})
            yield Proxied(local, network, proxy, port)


def client(p: Proxied) -> NetworkClient:
    return NetworkClient(p.network, timeout=3.0)


@pytest.mark.parametrize("mode", MODES)
async def test_push_audit_repair_gc_survive_a_hostile_node(proxied: Proxied, mode: str) -> None:
    seed = 9000 + MODES.index(mode)
    data = payload(seed, 150_000)
    key = record_key(seed)
    proxied.mode(mode)
    try:
        async with client(proxied) as net:
            async with asyncio.timeout(300):  # a bound on waiting; every step ends far sooner
                manifest, stats = await store_payload(net, proxied.local.publisher, [data])
                await publish_record(net, proxied.local.publisher, key, b"meta", manifest)
                found = await scanned(net, key)
                audit = await audit_network(net, rng=random.Random(1))
                repair = await repair_network(net, proxied.local.publisher, verify=True)
                gc = await collect_garbage(net, proxied.local.publisher, max_age=None,
                                           max_idle=None, grace=86400.0, dry_run=True)
            assert found is not None and found.newest is not None
            assert not found.newest.tombstone
            (row,) = [r for r in audit.nodes if r.node_id == HOSTILE]
            named = [
                *stats.passed_over,
                *([HOSTILE] if row.verdict != "ok" else []),
                *repair.unreachable,
                *(HOSTILE for line in repair.failures if HOSTILE in line),
                *(HOSTILE for line in gc.skipped if HOSTILE in line),
            ]
            if mode == "flip":  # shards it serves are wrong: the read-back catches them
                assert repair.corrupt_found > 0 or HOSTILE in stats.passed_over
            else:
                assert HOSTILE in named, (mode, stats.passed_over, row.verdict,
                                          repair.to_json(), gc.skipped)
            assert await read_back(net, manifest) == data
    finally:
        proxied.mode("pass")

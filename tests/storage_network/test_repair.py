"""Repair on real node processes: 8 nodes, 4-of-6, so lost shards have spare nodes to go to."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.locate import locate_shards
from storage_network.manifest import Manifest
from storage_network.network_client import NetworkClient
from storage_network.repair import repair_network

from .conftest import running_network
from .test_network_failures import publish, read_back

NODES = 8


@pytest.fixture
def net8(tmp_path: Path) -> Iterator[LocalNetwork]:
    """8 nodes, 4-of-6; the publisher's secret key file is ``tmp_path / "key"``."""
    publisher, secret = new_publisher("repair-test-1")
    (tmp_path / "key").write_text(secret)
    with running_network(tmp_path / "net", NODES, publisher) as local:
        yield local


def client(local: LocalNetwork) -> NetworkClient:
    assert local.network is not None
    return NetworkClient(local.network, timeout=10.0)


def listing(local: LocalNetwork) -> dict[str, set[str]]:
    """Shard ids per running node, read from GET /shards."""
    out = {}
    for proc in local.nodes:
        if proc.running:
            text = httpx.get(proc.url + "/shards", timeout=10).text
            out[proc.name] = {line.split()[0] for line in text.splitlines()}
    return out


def stored_shards(local: LocalNetwork) -> int:
    """Shards held by the running nodes, from their in-memory counters (cheap to poll)."""
    return sum(httpx.get(p.url + "/healthz", timeout=10).json()["shards"]
               for p in local.nodes if p.running)


async def shards_found(net: NetworkClient, manifest: Manifest) -> list[int]:
    loc = await locate_shards(net, manifest.chunks, manifest.k, manifest.m)
    return [len(h) for h in loc.holders]


async def test_repair_restores_n_shards_then_survives_m_more_losses(net8: LocalNetwork) -> None:
    async with client(net8) as net:
        _, data, manifest = await publish(net, net8, 1, size=400_000)
        _, data2, manifest2 = await publish(net, net8, 2, size=150_000)
    for number in (1, 2):
        net8.nodes[number - 1].kill()
        (net8.node_dir(number) / "shards").rename(net8.node_dir(number) / "wiped")
    async with client(net8) as net:
        assert min(await shards_found(net, manifest)) < manifest.n
        report = await repair_network(net, net8.publisher)
        assert report.complete, report.to_json()
        assert report.shards_written > 0
        assert await shards_found(net, manifest) == [manifest.n] * len(manifest.chunks)
        assert await shards_found(net, manifest2) == [manifest2.n] * len(manifest2.chunks)
        again = await repair_network(net, net8.publisher)
        assert again.shards_written == 0 and again.degraded == 0 and again.complete
    net8.nodes[2].kill()
    net8.nodes[3].kill()
    async with client(net8) as net:
        assert await read_back(net, manifest) == data
        assert await read_back(net, manifest2) == data2


async def test_dry_run_writes_nothing_and_plans_what_a_run_writes(net8: LocalNetwork) -> None:
    async with client(net8) as net:
        await publish(net, net8, 3, size=200_000)
    net8.nodes[4].kill()
    before = listing(net8)
    async with client(net8) as net:
        plan = await repair_network(net, net8.publisher, dry_run=True)
        assert listing(net8) == before
        assert plan.shards_written == 0 and plan.planned
        report = await repair_network(net, net8.publisher)
    after = listing(net8)
    for node_id, ids in after.items():
        assert ids == before[node_id] | set(plan.planned.get(node_id, [])), node_id
    assert report.shards_written == sum(len(v) for k, v in plan.planned.items()
                                        if k != "records")


async def test_records_copied_to_replicas(net8: LocalNetwork) -> None:
    async with client(net8) as net:
        key, _, _ = await publish(net, net8, 4, size=50_000)
    assert net8.network is not None
    holders = [p for p in net8.nodes
               if (net8.node_dir(int(p.name.split("-")[1])) / "records" / key).exists()]
    victim = holders[0]
    (net8.node_dir(int(victim.name.split("-")[1])) / "records" / key).unlink()
    async with client(net8) as net:
        report = await repair_network(net, net8.publisher)
    assert report.records_copied == 1
    assert (net8.node_dir(int(victim.name.split("-")[1])) / "records" / key).exists()


def test_repair_killed_halfway_ends_like_an_uninterrupted_run(net8: LocalNetwork,
                                                              tmp_path: Path) -> None:
    async def setup() -> None:
        async with client(net8) as net:
            await publish(net, net8, 5, size=3_000_000)

    asyncio.run(setup())
    net8.nodes[0].kill()
    net8.nodes[5].kill()
    before = listing(net8)

    async def dry() -> dict[str, list[str]]:
        async with client(net8) as net:
            return dict((await repair_network(net, net8.publisher, dry_run=True)).planned)

    planned = asyncio.run(dry())
    expected = {node: before[node] | set(planned.get(node, [])) for node in before}
    total = sum(len(v) for k, v in planned.items() if k != "records")
    assert total > 200
    key_file = tmp_path / "key"
    cmd = [sys.executable, "-m", "nixshard", "repair", "--network", str(net8.network_file),
           "--signing-key", str(key_file), "--jobs", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = stored_shards(net8)
    deadline = time.monotonic() + 120
    written = 0
    while time.monotonic() < deadline and proc.poll() is None:
        written = stored_shards(net8) - base
        if written > 0:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert 0 < written < total, f"the kill did not land halfway ({written} of {total})"
    partial = listing(net8)
    assert partial != expected
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert listing(net8) == expected
    assert "records: 1 checked" in done.stdout

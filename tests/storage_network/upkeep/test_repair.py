"""Repair on real node processes: 8 nodes, 4-of-6, so lost shards have spare nodes to go to."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web
from click.testing import CliRunner

from nixshard.localnet import LocalNetwork, new_publisher
from nixshard.repair_cli import repair_command
from storage_network.client import NetworkClient
from storage_network.config import Network, NodeInfo, init_network, write_network
from storage_network.errors import ShardProofError
from storage_network.nodes.placement import record_nodes, shard_nodes
from storage_network.read.locate import locate_shards
from storage_network.upkeep.audit import audit_network
from storage_network.upkeep.audit_findings import load_findings
from storage_network.upkeep.repair import repair_network
from storage_network.wire.manifest import Manifest
from storage_network.wire.record import open_record, seal_tombstone
from storage_network.wire.shard_batch import parse_put_batch
from storage_network.wire.stripe import parse_shard_id, verify_shard
from storage_network.write.publish import publish_record, store_payload
from storage_network.write.record_write import write_version
from tests.support.servers import serve_app
from tests.support.shards import rot_shards

from ..conftest import K, M, payload, publish, read_back, record_key, running_network
from ..conftest import network_client as client

NODES = 8


@pytest.fixture
def net8(tmp_path: Path) -> Iterator[LocalNetwork]:
    """8 nodes, 4-of-6; the publisher's secret key file is ``tmp_path / "key"``."""
    publisher, secret = new_publisher("repair-test-1")
    (tmp_path / "key").write_text(secret)
    with running_network(tmp_path / "net", NODES, publisher) as local:
        yield local


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
    base = stored_shards(net8)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # run it in 10 ms slices, counting while it is stopped, so that it cannot run on
    # to the end between the first write and the kill
    deadline = time.monotonic() + 120
    written = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            proc.send_signal(signal.SIGSTOP)
            written = stored_shards(net8) - base
            if written > 0:
                break
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    assert 0 < written < total, f"the kill did not land halfway ({written} of {total})"
    partial = listing(net8)
    assert partial != expected
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert listing(net8) == expected
    assert "records: 1 checked" in done.stdout


# --- healing corruption (audit findings, read-back) and degraded pushes ---------------


def corrupt(local: LocalNetwork, number: int, fraction: float, seed: int = 1) -> set[str]:
    """Flip the last 64 bytes of ``fraction`` of node ``number``'s shard files; their ids."""
    return {p.name for p in rot_shards(local.node_dir(number), fraction, seed)}


def shard_files_verify(local: LocalNetwork, number: int, ids: set[str]) -> bool:
    """True when every shard of ``ids`` on node ``number`` is present and verifies."""
    for sid in ids:
        root, index = parse_shard_id(sid)
        path = local.node_dir(number) / "shards" / sid[:2] / sid
        try:
            verify_shard(root, index, path.read_bytes())
        except (OSError, ShardProofError):
            return False
    return True


async def audit_report(net: NetworkClient) -> dict[str, object]:
    """An audit of every shard of every node, as the JSON ``nixshard audit`` writes."""
    report = await audit_network(net, rng=random.Random(3))
    return report.to_json()


async def test_corruption_found_by_audit_is_healed_then_m_other_nodes_may_go(
        net8: LocalNetwork, tmp_path: Path) -> None:
    """30% of one node's shards rot.  Repair alone sees every stripe complete (``has``
    says present); with the audit's findings it reads the suspect node back, rebuilds
    every bad shard in place, and the data survives m other nodes going down."""
    async with client(net8) as net:
        _, data, manifest = await publish(net, net8, 11, size=600_000)
    bad = corrupt(net8, 3, 0.3)
    assert len(bad) >= 5
    async with client(net8) as net:
        blind = await repair_network(net, net8.publisher, dry_run=True)
        assert blind.degraded == 0  # nothing tells repair without reading

        doc = await audit_report(net)
        (row,) = [r for r in doc["nodes"] if r["node"] == "node-3"]  # type: ignore[attr-defined]
        assert row["verdict"] == "corrupt" and set(row["corrupt_shards"]) <= bad
        path = tmp_path / "audit.json"
        path.write_text(json.dumps(doc))
        findings = load_findings(path, [n.id for n in net.network.nodes])
        assert findings.suspects == {"node-3"}

        plan = await repair_network(net, net8.publisher, dry_run=True, findings=findings)
        assert plan.degraded == len(bad) and plan.corrupt_found >= len(bad)
        assert sorted(plan.planned["node-3"]) == sorted(bad)
        assert not shard_files_verify(net8, 3, bad)

        report = await repair_network(net, net8.publisher, findings=findings)
        assert report.complete, report.to_json()
        assert report.shards_healed == report.shards_written == len(bad)
        assert shard_files_verify(net8, 3, bad)
        same = await repair_network(net, net8.publisher, findings=findings)
        assert same.shards_written == 0 and same.corrupt_found == 0  # read back: all good
        again = await repair_network(net, net8.publisher, verify=True)
        assert again.degraded == 0 and again.corrupt_found == 0 and again.complete
    ranked = [n.id for n in shard_nodes(net8.network.nodes,  # type: ignore[union-attr]
                                        manifest.chunks[0].chunk_id, manifest.n)]
    others = [r for r in ranked if r != "node-3"][:2]
    for node_id in others:
        net8.nodes[int(node_id.split("-")[1]) - 1].kill()
    async with client(net8) as net:
        assert await read_back(net, manifest) == data


async def test_repair_verifies_what_it_reads_and_heals_a_corrupt_copy(
        net8: LocalNetwork) -> None:
    """A stripe missing a shard (node wiped) is rebuilt from shards read back and
    verified; a corrupt copy met on the way is rebuilt too, without any audit."""
    async with client(net8) as net:
        _, data, manifest = await publish(net, net8, 12, size=200_000)
    net8.nodes[0].kill()
    (net8.node_dir(1) / "shards").rename(net8.node_dir(1) / "wiped")
    bad = corrupt(net8, 2, 1.0)  # every shard of node-2
    async with client(net8) as net:
        report = await repair_network(net, net8.publisher)
        assert report.complete, report.to_json()
        assert report.corrupt_found > 0 and report.shards_healed > 0
        assert report.shards_verified > 0
        healed = {sid for sid in bad if shard_files_verify(net8, 2, {sid})}
        assert healed, "no corrupt shard met by the rebuild was healed"
        assert await read_back(net, manifest) == data


async def test_a_degraded_push_is_completed_by_repair(net8: LocalNetwork) -> None:
    """8 nodes, 4-of-6, 3 down: chunks commit with 5 shards; repair brings them to 6."""
    down = [2, 5, 7]
    for number in down:
        net8.nodes[number - 1].kill()
    async with client(net8) as net:
        manifest, stats = await store_payload(net, net8.publisher, [payload(13, 300_000)])
        await publish_record(net, net8.publisher, record_key(13), b"meta", manifest)
        assert stats.degraded_chunks == len(manifest.chunks)
        assert set(await shards_found(net, manifest)) == {K + 1}
    for number in down:
        net8.restart_node(number)
    async with client(net8) as net:
        report = await repair_network(net, net8.publisher)
        assert report.complete, report.to_json()
        assert report.degraded == len(manifest.chunks)
        assert await shards_found(net, manifest) == [manifest.n] * len(manifest.chunks)


async def test_repair_copies_a_tombstone_a_window_node_missed(net8: LocalNetwork) -> None:
    async with client(net8) as net:
        key, _, _ = await publish(net, net8, 14, size=20_000)
    assert net8.network is not None
    order = [n.id for n in record_nodes(net8.network.nodes, key)]
    net8.nodes[int(order[1].split("-")[1]) - 1].kill()
    async with client(net8) as net:
        tomb = seal_tombstone(net8.publisher, key, "isa_l_rs_cauchy", K, M,
                              created=int(time.time()) + 5)  # surely newer than the record
        opened = open_record(net.network.publishers, key, tomb)
        outcome = await write_version(net, net8.publisher, key, tomb, opened)
        assert sorted(outcome.stored) == sorted([order[0], order[2], order[3]])
    net8.restart_node(int(order[1].split("-")[1]))
    async with client(net8) as net:
        plan = await repair_network(net, net8.publisher, dry_run=True)
        assert plan.planned["records"] == [f"{key} -> {order[1]}"]
        assert plan.tombstones >= 1
        report = await repair_network(net, net8.publisher)
        assert report.records_copied == 1 and report.complete, report.to_json()
    held = (net8.node_dir(int(order[1].split("-")[1])) / "records" / key).read_bytes()
    assert held == tomb


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not JSON"),
    ('{"records": 1}', 'not an audit report (no "nodes" list)'),
    ('{"nodes": [{"node": "node-99", "verdict": "ok"}]}', "node 'node-99', which is not in"),
    ('{"nodes": [{"node": "node-1", "verdict": "corrupt", "corrupt_shards": ["../x"]}]}',
     "node node-1: bad shard id '../x'"),
    ('{"nodes": [{"node": "node-1", "verdict": "corrupt", "missing_shards": [1]}]}',
     "'missing_shards' is not a list of shard ids"),
    ("[" * 100_000, "not JSON (RecursionError)"),
])
def test_repair_from_a_bad_audit_file_is_refused(tmp_path: Path, text: str,
                                                 message: str) -> None:
    publisher, secret = new_publisher("repair-cli-1")
    (tmp_path / "key").write_text(secret)
    write_network(init_network([f"http://127.0.0.1:{9 + i}" for i in range(6)], 4, 2,
                               [publisher.public]), tmp_path / "network.toml")
    (tmp_path / "audit.json").write_text(text)
    result = CliRunner().invoke(repair_command, [
        "--network", str(tmp_path / "network.toml"), "--signing-key", str(tmp_path / "key"),
        "--from-audit", str(tmp_path / "audit.json"), "--dry-run"])
    assert result.exit_code == 1, result.output
    assert message in result.output


@pytest.fixture
async def keeps_bytes(net8: LocalNetwork) -> AsyncIterator[tuple[str, list[str]]]:
    """A user-space proxy in front of node-3 that acts as a node without the healing
    rule: a batch put is answered "held" for every shard and not forwarded; every
    other request is forwarded.  Yields its URL and the requests it forwarded."""
    upstream = net8.nodes[2].url
    seen: list[str] = []
    session = aiohttp.ClientSession()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "POST" and request.path == "/shards/batch-put":
            ids = [sid for sid, _ in parse_put_batch(body, 1 << 30)]
            return web.json_response({"created": [], "held": ids, "healed": []})
        seen.append(f"{request.method} {request.path}")
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        async with session.request(request.method, upstream + request.path_qs, data=body,
                                   headers=headers) as resp:
            return web.Response(status=resp.status, body=await resp.read(),
                                content_type=resp.content_type)

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handle)
    try:
        async with serve_app(app) as url:
            yield url, seen
    finally:
        await session.close()


async def test_a_node_that_keeps_bad_bytes_gets_delete_then_put(
        net8: LocalNetwork, keeps_bytes: tuple[str, list[str]]) -> None:
    """Against a node that answers "held" to a PUT of a shard it holds rotten, repair
    deletes the shard (``?before=now+1``) and puts it again."""
    async with client(net8) as net:
        await publish(net, net8, 15, size=100_000)
    bad = corrupt(net8, 3, 1.0)
    url, seen = keeps_bytes
    assert net8.network is not None
    nodes = tuple(NodeInfo(n.id, url) if n.id == "node-3" else n for n in net8.network.nodes)
    network = Network(**{**net8.network.__dict__, "nodes": nodes})
    async with NetworkClient(network, timeout=10.0) as net:
        report = await repair_network(net, net8.publisher, verify=True)
    assert report.complete, report.to_json()
    assert report.shards_healed == len(bad)
    assert sum(line.startswith("DELETE /shards/") for line in seen) == len(bad)
    assert shard_files_verify(net8, 3, bad)

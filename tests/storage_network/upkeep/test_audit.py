"""``nixshard audit`` and storage_network.upkeep.audit against real node processes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork
from storage_network.client import NetworkClient
from storage_network.nodes.placement import shard_nodes
from storage_network.nodes.scores import Scores
from storage_network.upkeep.audit import (
    DEFAULT_SAMPLE,
    AuditReport,
    audit_network,
    sample_size,
    update_scores,
)
from storage_network.wire.manifest import Manifest
from storage_network.wire.stripe import shard_id
from storage_network.write.publish import publish_record, store_payload

from ..conftest import NODES, K, M, payload, record_key

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_sample_size() -> None:
    assert sample_size() == DEFAULT_SAMPLE == 90
    assert 0.95 ** 90 < 0.01 < 0.95 ** 89
    assert sample_size(0.10, 0.99) == 44
    assert sample_size(0.5, 0.75) == 2
    assert sample_size(0.01, 0.999) == 688
    for bad in ((0.0, 0.99), (1.0, 0.99), (0.05, 1.0), (0.05, 0.0)):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            sample_size(*bad)


async def store(local: LocalNetwork, seed: int, size: int) -> Manifest:
    """Store a payload and publish its record (the inventory finds stripes through records)."""
    assert local.network is not None
    async with NetworkClient(local.network, timeout=30.0) as net:
        manifest, _ = await store_payload(net, local.publisher, [payload(seed, size)])
        await publish_record(net, local.publisher, record_key(seed), b"audit test", manifest)
    return manifest


async def run(local: LocalNetwork, sample: int = DEFAULT_SAMPLE,
              deadline: float = 30.0) -> AuditReport:
    assert local.network is not None
    async with NetworkClient(local.network, timeout=30.0) as net:
        return await audit_network(net, sample=sample, deadline=deadline,
                                   rng=random.Random(5))


def rows(report: AuditReport) -> dict[str, dict[str, object]]:
    return {row.node_id: row.to_json() for row in report.nodes}


async def test_audit_classes_and_scores(fresh_net: LocalNetwork) -> None:
    manifest = await store(fresh_net, 21, 150_000)
    stripes = len(manifest.chunks)
    assert stripes >= 5

    report = await run(fresh_net)
    assert report.stripes == stripes and report.records == 1
    assert report.flagged == []
    for row in report.nodes:  # n = 6 = nodes: each node is home to one shard a stripe
        assert (row.expected, row.sampled, row.held) == (stripes, stripes, stripes)
        assert row.verdict == "ok" and row.pass_fraction == 1.0

    small = await run(fresh_net, sample=3)
    assert all((r.sampled, r.held) == (3, 3) for r in small.nodes)

    late = await run(fresh_net, deadline=1e-9)
    assert {r.verdict for r in late.nodes} == {"late"}
    assert all(r.late == r.sampled and r.held == 0 for r in late.nodes)

    # a shard that repair moved elsewhere is expected there too (listed + known stripe)
    assert fresh_net.network is not None
    ref = manifest.chunks[0]
    home = shard_nodes(fresh_net.network.nodes, ref.chunk_id, K + M)
    sid = shard_id(ref.root, 0)
    body = (fresh_net.node_dir(int(home[0].id.split("-")[1])) / "shards" / sid[:2] / sid)
    async with NetworkClient(fresh_net.network) as net:
        assert await net.nodes[home[1].id].put_shard(sid, body.read_bytes(),
                                                     fresh_net.publisher)
    moved = await run(fresh_net)
    assert rows(moved)[home[1].id]["expected"] == stripes + 1
    assert moved.flagged == []

    fresh_net.nodes[5].kill()
    down = await run(fresh_net)
    row = next(r for r in down.nodes if r.node_id == "node-6")
    assert row.verdict == "unreachable" and row.unreachable == row.sampled == stripes
    assert row.pass_fraction == 0.0 and row.listing_error is not None
    assert [r.node_id for r in down.flagged] == ["node-6"]

    scores = Scores()
    update_scores(report, scores, now=1.0)
    update_scores(down, scores, now=2.0)
    assert scores.score("node-1") == 1.0
    assert scores.score("node-6") == 0.5
    assert scores.nodes["node-6"].last["verdict"] == "unreachable"
    assert row.score == 0.5


async def test_audit_with_no_records(fresh_net: LocalNetwork) -> None:
    report = await run(fresh_net)
    assert report.stripes == 0 and report.flagged == []
    assert all(r.expected == r.sampled == 0 and r.pass_fraction is None for r in report.nodes)
    scores = Scores()
    update_scores(report, scores)
    assert scores.nodes == {} and all(r.score == 1.0 for r in report.nodes)


def shard_files(local: LocalNetwork, number: int) -> list[Path]:
    return sorted(p for p in (local.node_dir(number) / "shards").rglob("*.*") if p.is_file())


def audit_cli(local: LocalNetwork, scores: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(local.root / "state")}
    return subprocess.run(
        [sys.executable, "-m", "nixshard", "audit", "--network", str(local.network_file),
         "--scores", str(scores), "--deadline", "60", "--seed", "3", *extra],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=env)


async def test_acceptance_audit_flags_missing_and_corrupt_nodes(
        fresh_net: LocalNetwork, tmp_path: Path) -> None:
    """One `nixshard audit` run flags a node that silently deleted 10% of its shards and a
    node with flipped bytes on disk, passes the others, and writes lower scores for both."""
    manifest = await store(fresh_net, 31, 900_000)
    stripes = len(manifest.chunks)
    assert NODES == K + M  # every node is home to one shard of each stripe
    assert stripes >= 40, stripes
    files1, files2 = shard_files(fresh_net, 1), shard_files(fresh_net, 2)
    assert len(files1) == len(files2) == stripes

    rng = random.Random(8)
    deleted = rng.sample(files1, stripes // 10)
    for path in deleted:
        path.unlink()
    flipped = rng.sample(files2, 3)
    for path in flipped:
        data = bytearray(path.read_bytes())
        for pos in (len(data) // 2, len(data) - 1):
            data[pos] ^= 0xFF
        path.write_bytes(bytes(data))

    scores = tmp_path / "scores.json"
    result = audit_cli(fresh_net, scores, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    by_node = {row["node"]: row for row in doc["nodes"]}
    assert doc["stripes"] == stripes and doc["records"] == 1
    assert doc["flagged"] == ["node-1", "node-2"]
    assert doc["scores_file"] == str(scores)

    one, two = by_node["node-1"], by_node["node-2"]
    assert one["verdict"] == "missing"
    assert (one["expected"], one["sampled"]) == (stripes, min(stripes, DEFAULT_SAMPLE))
    assert one["missing"] == len(deleted) and one["corrupt"] == 0
    assert set(one["bad_shards"]) == {p.name for p in deleted}
    assert two["verdict"] == "corrupt"
    assert two["corrupt"] == len(flipped) and two["missing"] == 0
    assert set(two["bad_shards"]) == {p.name for p in flipped}
    assert all("match" in note for note in two["notes"])
    for node_id in ("node-3", "node-4", "node-5", "node-6"):
        row = by_node[node_id]
        assert row["verdict"] == "ok"
        assert row["held"] == row["sampled"] == row["expected"] == stripes
        assert row["score"] == 1.0

    saved = json.loads(scores.read_text())["nodes"]
    assert set(saved) == {f"node-{i}" for i in range(1, 7)}
    ok_score = saved["node-3"]["score"]
    assert ok_score == 1.0
    assert saved["node-1"]["score"] < ok_score and saved["node-2"]["score"] < ok_score
    assert saved["node-1"]["score"] == one["score"]
    assert saved["node-1"]["last"]["missing"] == len(deleted)
    assert saved["node-2"]["last"]["verdict"] == "corrupt"

    # the table for people, a second run: scores fall further
    table = audit_cli(fresh_net, scores)
    assert table.returncode == 1, table.stderr
    assert "2 of 6 nodes flagged: node-1 (missing), node-2 (corrupt)" in table.stdout
    assert "node-3" in table.stdout and "ok" in table.stdout
    again = json.loads(scores.read_text())["nodes"]
    assert again["node-1"]["score"] < saved["node-1"]["score"]
    assert again["node-1"]["runs"] == 2


def test_cli_passes_a_whole_network_and_refuses_bad_files(live_net: LocalNetwork,
                                                         tmp_path: Path) -> None:
    scores = tmp_path / "s.json"
    result = audit_cli(live_net, scores, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["flagged"] == []
    assert scores.is_file()

    scores.write_text("not json")
    bad = audit_cli(live_net, scores)
    assert bad.returncode == 2 and "scores file" in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "nixshard", "audit", "--network", str(tmp_path / "none.toml")],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert missing.returncode == 2 and "cannot read network file" in missing.stderr
    help_text = subprocess.run([sys.executable, "-m", "nixshard", "audit", "--help"],
                               capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert "1 when any node was flagged" in help_text.stdout

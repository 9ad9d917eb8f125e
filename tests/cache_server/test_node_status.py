"""``GET /nixshard/nodes`` and the daemon's read path with a stalling node (real processes)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard
from click.testing import CliRunner

from cache_server.cli import load_scores, serve_command
from nix_formats.hash import parse_nix_hash
from nix_formats.narinfo import NarInfo
from nixshard.localnet import new_publisher
from storage_network.config import init_network, write_network
from storage_network.nodes.scores import Scores

from .conftest import StalledServed

FIELDS = {"node_id", "url", "shards_served", "bytes_served", "failures", "slow_events",
          "standing", "benched", "out_seconds", "reason", "score"}


def nodes_status(s: StalledServed) -> dict[str, dict[str, Any]]:
    resp = httpx.get(s.served.url + "/nixshard/nodes", timeout=30)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    return {entry["node_id"]: entry for entry in resp.json()["nodes"]}


def test_nar_is_served_with_a_stalling_node(stalled_served: StalledServed) -> None:
    s = stalled_served.served
    resp = httpx.get(f"{s.url}/{s.info.store_path.hash_part}.narinfo", timeout=30)
    assert resp.status_code == 200, resp.text
    info = NarInfo.parse(resp.text)
    resp = httpx.get(f"{s.url}/{info.url}", timeout=30)
    assert resp.status_code == 200
    assert len(resp.content) == int(resp.headers["content-length"]) == info.file_size
    nar = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(
        resp.content)
    assert hashlib.sha256(nar).digest() == parse_nix_hash(info.nar_hash)[1]

    status = nodes_status(stalled_served)
    stalled = status[stalled_served.stalled]
    # the daemon's node timeout (10 s) is not below the stall (10 s): a read that
    # waited for the node would show a shard served or a failure
    assert stalled["shards_served"] == 0 and stalled["bytes_served"] == 0
    assert stalled["failures"] == 0
    assert stalled["slow_events"] >= 1
    assert stalled["reason"] is not None and stalled["benched"] is False
    others = [v for nid, v in status.items() if nid != stalled_served.stalled]
    assert sum(v["bytes_served"] for v in others) >= (info.file_size or 1)
    assert all(v["failures"] == 0 and v["benched"] is False for v in others)


def test_node_status_lists_every_node(stalled_served: StalledServed) -> None:
    network = stalled_served.served.net.network
    assert network is not None
    resp = httpx.get(stalled_served.served.url + "/nixshard/nodes", timeout=30)
    entries = resp.json()["nodes"]
    assert [e["node_id"] for e in entries] == [n.id for n in network.nodes]
    assert [e["url"] for e in entries] == [n.url for n in network.nodes]
    for entry in entries:
        assert set(entry) == FIELDS
        assert entry["standing"] in ("good", "demoted", "benched")
        assert entry["score"] == (0.5 if entry["node_id"] == stalled_served.low_score else 1.0)


def _network_file(tmp_path: Path) -> Path:
    publisher, _ = new_publisher("serve-cli-1")
    path = tmp_path / "network.toml"
    write_network(init_network(["http://127.0.0.1:1"], 1, 0, [publisher.public]), path)
    return path


def test_serve_refuses_a_malformed_scores_file(tmp_path: Path) -> None:
    bad = tmp_path / "scores.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(serve_command, ["--network", str(_network_file(tmp_path)),
                                                "--scores", str(bad)])
    assert result.exit_code == 1
    assert f"scores file {bad}:" in result.output


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_serve_refuses_a_bad_hedge_after(tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(serve_command, ["--network", str(_network_file(tmp_path)),
                                                "--hedge-after", value])
    assert result.exit_code == 2
    assert "--hedge-after" in result.output


def test_scores_default_to_the_state_file_when_it_exists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert load_scores(None) is None
    saved = Scores()
    saved.update("node-1", 0.5, {})
    saved.save(tmp_path / "nixshard" / "scores.json")
    loaded = load_scores(None)
    assert loaded is not None and loaded.score("node-1") == 0.75
    missing = load_scores(tmp_path / "nowhere.json")  # not written yet: every node 1.0
    assert missing is not None and missing.nodes == {}

"""The maintenance commands' command lines: network add/remove-node, status, durability,
and the network file and signing key as repair and gc read them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nix_formats.keys import SecretKey
from nixshard.cli import main
from storage_network.config import init_network, load_network, write_network

URLS = [f"http://127.0.0.1:{9100 + i}" for i in range(1, 7)]


def network_file(tmp_path: Path) -> Path:
    path = tmp_path / "network.toml"
    write_network(init_network(URLS, 4, 2), path)
    return path


def test_add_and_remove_node(tmp_path: Path) -> None:
    path = network_file(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["network", "add-node", "--network", str(path), "--id", "node-7",
                               "--url", "http://127.0.0.1:9107"])
    assert res.exit_code == 0, res.output
    assert [n.id for n in load_network(path).nodes][-1] == "node-7"
    res = runner.invoke(main, ["network", "add-node", "--network", str(path), "--id", "node-7",
                               "--url", "http://127.0.0.1:9108"])
    assert res.exit_code == 1 and "already in the network" in res.output
    res = runner.invoke(main, ["network", "remove-node", "--network", str(path), "node-2"])
    assert res.exit_code == 0 and "run `nixshard repair` now" in res.output
    assert "node-2" not in [n.id for n in load_network(path).nodes]
    res = runner.invoke(main, ["network", "remove-node", "--network", str(path), "node-1"])
    assert res.exit_code == 1 and "fewer than k + m = 6" in res.output


def test_status_reports_unreachable_nodes(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["status", "--network", str(network_file(tmp_path)),
                                    "--scores", str(tmp_path / "none.json"), "--json",
                                    "--timeout", "1"])
    assert res.exit_code == 1
    rows = json.loads(res.output)["nodes"]
    assert [r["health"] for r in rows] == ["unreachable"] * 6
    assert all(r["score"] == 1.0 for r in rows)


def test_status_refuses_a_bad_scores_file(tmp_path: Path) -> None:
    bad = tmp_path / "scores.json"
    bad.write_text("{")
    res = CliRunner().invoke(main, ["status", "--network", str(network_file(tmp_path)),
                                    "--scores", str(bad)])
    assert res.exit_code == 1 and "scores file" in res.output


def test_durability_from_a_network_file_and_from_k_m(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["durability", "-k", "16", "-m", "24", "-p", "0.05", "--json"])
    assert res.exit_code == 0
    (row,) = json.loads(res.output)["rows"]
    assert 5e-23 < row["chunk"] < 7e-23
    res = runner.invoke(main, ["durability", "--network", str(network_file(tmp_path)),
                               "-p", "0.01"])
    assert res.exit_code == 0 and "4-of-6" in res.output
    res = runner.invoke(main, ["durability", "-k", "4"])
    assert res.exit_code == 2 and "give --network FILE, or -k and -m" in res.output


@pytest.mark.parametrize("command", ["repair", "gc"])
def test_repair_and_gc_refuse_a_bad_network_file_or_signing_key(tmp_path: Path,
                                                                  command: str) -> None:
    runner = CliRunner()
    key = SecretKey.generate("maintenance-test-1")
    (tmp_path / "secret.key").write_text(key.text())
    net = str(network_file(tmp_path))
    res = runner.invoke(main, [command, "--network", str(tmp_path / "none.toml"),
                               "--signing-key", str(tmp_path / "secret.key")])
    assert res.exit_code == 1 and "cannot read network file" in res.output
    res = runner.invoke(main, [command, "--network", net,
                               "--signing-key", str(tmp_path / "missing.key")])
    assert res.exit_code == 1 and f"cannot read signing key {tmp_path}/missing.key" in res.output
    (tmp_path / "public.key").write_text(key.public_key().text())
    res = runner.invoke(main, [command, "--network", net,
                               "--signing-key", str(tmp_path / "public.key")])
    assert res.exit_code == 1 and "is it a public key?" in res.output
    res = runner.invoke(main, [command, "--network", net,
                               "--signing-key", str(tmp_path / "secret.key")])
    assert res.exit_code == 1
    assert f"does not list publisher key {key.public_key().text()}" in res.output

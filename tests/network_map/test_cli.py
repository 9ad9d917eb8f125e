"""``nixshard map propose|sign|publish|show|bootstrap`` and ``nixshard node join-request``."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from nixshard.cli import main
from nixshard.localnet import NodeProcess, free_port, new_publisher
from storage_network.config import NodeInfo, init_network, write_network
from storage_network.errors import MapError
from storage_network.network_map import load_signed_map
from storage_network.network_map.join_request import parse_join_request

from .conftest import served_epoch, wait_until

Start = Callable[[Sequence[NodeProcess]], list[NodeProcess]]


def run(*args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


def join(tmp: Path, name: str, port: int, operator: str) -> tuple[Path, Path, NodeInfo]:
    """A node key and its join request file, made by the command."""
    key = tmp / f"{name}.key"
    out = run("node", "join-request", "--key", str(key), "--url", f"http://127.0.0.1:{port}",
              "--operator", operator, "--zone", "z1").stdout
    request = tmp / f"{name}.join.json"
    request.write_text(out)
    return key, request, parse_join_request(out.encode())


def test_join_request_makes_the_key_once(tmp_path: Path) -> None:
    key, request, node = join(tmp_path, "n1", 9001, "acme")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert node.id.startswith("node-") and key.read_text().startswith(node.id + ":")
    assert (node.operator, node.zone, node.url) == ("acme", "z1", "http://127.0.0.1:9001")
    _, _, again = join(tmp_path, "n1", 9002, "acme")
    assert again.id == node.id  # the key is kept, not made anew
    bad = run("node", "join-request", "--key", str(key), "--url", "ftp://x", "--operator",
              "a", ok=False)
    assert "url 'ftp://x'" in bad.output
    tampered = json.loads(request.read_text())
    tampered["url"] = "http://127.0.0.1:9999"
    with pytest.raises(MapError, match="signature by its node key does not verify"):
        parse_join_request(json.dumps(tampered).encode())
    tampered = json.loads(request.read_text())
    tampered["id"] = "node-1"
    with pytest.raises(MapError, match="is not the id of its public key"):
        parse_join_request(json.dumps(tampered).encode())


def test_round_trip(tmp_path: Path, started: Start) -> None:
    ports = [free_port() for _ in range(4)]
    joined = [join(tmp_path, f"n{i}", port, f"op-{i % 2}") for i, port in enumerate(ports)]
    maint = []
    for i in range(1, 4):
        publisher, secret = new_publisher(f"maint-{i}")
        path = tmp_path / f"maint-{i}.secret"
        path.write_text(secret)
        maint.append((publisher, path))
    pub = new_publisher("pub-1")[0]
    network = init_network([f"http://127.0.0.1:{p}" for p in ports[:3]], 2, 1, [pub.public],
                           maintainers=[p.public for p, _ in maint])
    network = network.__class__(**{**network.__dict__,
                                   "nodes": tuple(n for _, _, n in joined[:3])})
    write_network(network, tmp_path / "network.toml")

    draft = tmp_path / "epoch1.json"
    run("map", "propose", "--network", str(tmp_path / "network.toml"), "-o", str(draft))
    assert load_signed_map(draft).document.threshold == 2  # a majority of 3
    for _, key_file in (maint[0], maint[1], maint[1]):
        run("map", "sign", "--key", str(key_file), str(draft))
    assert [s.key_name for s in load_signed_map(draft).signatures] == ["maint-1", "maint-2"]
    boot = tmp_path / "bootstrap.toml"
    run("map", "bootstrap", str(draft), "-o", str(boot))

    args = ["--bootstrap", str(boot), "--gossip-seconds", "0.3"]
    nodes = started([NodeProcess(tmp_path / f"data-{i}", [pub.public.text()], node.id,
                                 port=ports[i], extra_args=["--key", str(key), *args])
                     for i, (key, _, node) in enumerate(joined[:3])])
    out = run("map", "publish", str(draft), "--to", nodes[0].url).stdout
    assert f"{nodes[0].url}: accepted epoch 1" in out
    wait_until(lambda: all(served_epoch(n.url) == 1 for n in nodes), "every node has epoch 1")

    second = tmp_path / "epoch2.json"
    run("map", "propose", "--from", str(draft), "--add-node", str(joined[3][1]), "--drain",
        joined[0][2].id, "--quota", "pub-1=5000", "-o", str(second))
    run("map", "sign", "--key", str(maint[2][1]), str(second))
    out = run("map", "publish", str(second), "--to", nodes[1].url, ok=False).output
    assert "refused: 422" in out and "epoch 2 has 1 valid signature of maintainers of " \
        "epoch 1, needs 2" in out
    run("map", "sign", "--key", str(maint[0][1]), str(second))
    out = run("map", "publish", str(second), "--to", nodes[1].url, "--to", nodes[2].url).stdout
    assert out.count("accepted epoch 2") == 2
    wait_until(lambda: all(served_epoch(n.url) == 2 for n in nodes), "every node has epoch 2")

    shown = run("map", "show", "--from", nodes[0].url).stdout
    assert "epoch 2" in shown and "2-of-3 (k=2, m=1)" in shown
    assert "nodes     4 (3 active) of 2 operator(s)" in shown
    assert f"{joined[0][2].id}  {joined[0][2].url}  draining" in shown
    assert "pub-1  quota 5000 bytes" in shown
    assert "maintainers 2-of-3 sign epoch 3: maint-1, maint-2, maint-3" in shown
    assert "not checked" in shown
    checked = run("map", "show", str(second), "--previous", str(draft)).stdout
    assert "signed by maint-3, maint-1: valid (2 of the 3 maintainers of epoch 1, " \
        "threshold 2)" in checked
    first = run("map", "show", str(draft)).stdout
    assert "valid (2 of the 3 maintainers of" in first
    wrong = run("map", "show", str(second), "--bootstrap", str(boot)).stdout
    assert "NOT VALID: epoch 2 does not follow" in wrong


@pytest.mark.parametrize(("args", "reason"), [
    ((), "give --network FILE (epoch 1) or --from MAP"),
    (("--from", "missing.json"), "cannot read map file"),
])
def test_propose_refusals(tmp_path: Path, args: tuple[str, ...], reason: str) -> None:
    result = run("map", "propose", *args, "-o", str(tmp_path / "d.json"), ok=False)
    assert reason in result.output


def test_propose_from_a_network_file_without_node_keys(tmp_path: Path) -> None:
    network = init_network(["http://127.0.0.1:1", "http://127.0.0.1:2"], 1, 1,
                           [new_publisher("pub-1")[0].public],
                           maintainers=[new_publisher("m-1")[0].public])
    write_network(network, tmp_path / "network.toml")
    result = run("map", "propose", "--network", str(tmp_path / "network.toml"), "-o",
                 str(tmp_path / "d.json"), ok=False)
    assert "node node-1 (http://127.0.0.1:1) has no public_key" in result.output


def test_node_start_refusals(tmp_path: Path) -> None:
    key, _, node = join(tmp_path, "n1", 9001, "acme")
    data = str(tmp_path / "data")
    result = run("node", "--data", data, "--key", str(key), "--node-id", "node-1",
                 "--accept-publisher", new_publisher("p")[0].public.text(), ok=False)
    assert f"--node-id 'node-1' is not the id of the key {key} ('{node.id}')" in result.output
    result = run("node", "--data", data, "--key", str(tmp_path / "absent.key"), ok=False)
    assert "cannot read node key file" in result.output
    (tmp_path / "bad.json").write_text("{}")
    result = run("node", "--data", data, "--map", str(tmp_path / "bad.json"), ok=False)
    assert "map file" in result.output and "exactly the keys" in result.output
    (tmp_path / "boot.toml").write_text("threshold = 1")
    result = run("node", "--data", data, "--bootstrap", str(tmp_path / "boot.toml"),
                 "--accept-publisher", new_publisher("p")[0].public.text(), ok=False)
    assert "must list at least one" in result.output

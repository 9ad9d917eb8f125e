"""`nixshard network init --node ID=URL`: explicit node ids, plain URLs as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nix_formats.keys import SecretKey
from nixshard.network_cli import init_command
from storage_network.config import load_network

PUBLISHER = SecretKey.generate("init-ids-1").public_key().text()


def run_init(tmp_path: Path, *nodes: str, k: int = 2, m: int = 1) -> tuple[int, str, Path]:
    out = tmp_path / "network.toml"
    args = ["-k", str(k), "-m", str(m), "--publisher", PUBLISHER, "-o", str(out)]
    for node in nodes:
        args += ["--node", node]
    res = CliRunner().invoke(init_command, args)
    return res.exit_code, res.output, out


def test_explicit_ids_are_kept_in_the_order_given(tmp_path: Path) -> None:
    code, output, out = run_init(tmp_path, "zeta=http://10.0.0.9:9001",
                                 "alpha=http://10.0.0.1:9001/", "mid.dc-2=https://n.example:443")
    assert code == 0, output
    nodes = load_network(out).nodes
    assert [(n.id, n.url) for n in nodes] == [("zeta", "http://10.0.0.9:9001"),
                                              ("alpha", "http://10.0.0.1:9001"),
                                              ("mid.dc-2", "https://n.example:443")]
    assert "zeta = http://10.0.0.9:9001   (start it with --node-id zeta)" in output


def test_plain_urls_get_node_ids_by_position(tmp_path: Path) -> None:
    code, output, out = run_init(tmp_path, "http://b:9001", "http://a:9001", "http://c:9001")
    assert code == 0, output
    assert [(n.id, n.url) for n in load_network(out).nodes] == [
        ("node-1", "http://b:9001"), ("node-2", "http://a:9001"), ("node-3", "http://c:9001")]


def test_mixed_forms_and_an_s3_url_with_equals_signs(tmp_path: Path) -> None:
    s3 = "s3://cache/shards?endpoint=https://s3.example:9000&region=auto"
    code, output, out = run_init(tmp_path, "http://a:9001", f"r2-eu={s3}", s3.replace(
        "shards", "other"))
    assert code == 0, output
    assert [(n.id, n.url) for n in load_network(out).nodes] == [
        ("node-1", "http://a:9001"), ("r2-eu", s3), ("node-3", s3.replace("shards", "other"))]
    assert "node-1 = http://a:9001   (start it with --node-id node-1)" in output
    assert f"r2-eu = {s3}\n" in output  # a bucket has no --node-id


@pytest.mark.parametrize(("nodes", "message"), [
    (("a=http://a:9001", "a=http://b:9001", "c=http://c:9001"),
     "id 'a' is given by --node number 1 and number 2"),
    (("node-2=http://a:9001", "http://b:9001", "http://c:9001"),
     "id 'node-2' is given by --node number 1 and number 2 (a plain URL takes the id node-N"),
    (("a=http://x:9001", "b=http://x:9001", "c=http://c:9001"),
     "URL 'http://x:9001' is given by --node number 1 and number 2"),
    (("-bad=http://a:9001", "http://b:9001", "http://c:9001"),
     "node id '-bad' must be 1-64 letters"),
    (("a=", "http://b:9001", "http://c:9001"), "'a=': no URL after '='"),
    (("a=ftp://a:21", "http://b:9001", "http://c:9001"),
     "url 'ftp://a:21' has no known scheme"),
])
def test_bad_node_specs_are_refused_in_words(tmp_path: Path, nodes: tuple[str, ...],
                                             message: str) -> None:
    code, output, out = run_init(tmp_path, *nodes)
    assert code != 0
    assert message in output, output
    assert not out.exists()


def test_help_says_ids_follow_the_order(tmp_path: Path) -> None:
    res = CliRunner().invoke(init_command, ["--help"])
    assert "in any order" not in res.output
    assert "ids follow the order given" in " ".join(res.output.split())

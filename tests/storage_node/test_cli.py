"""The ``nixshard node`` command line (in-process; nothing here starts a server)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from storage_network.auth import Publisher
from storage_network.network_file import init_network, load_network, write_network
from storage_node.cli import gather_publishers, node_command, parse_listen
from storage_node.store import Store
from tests.netsupport import make_publisher


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(node_command, list(args))
    return result.exit_code, result.output


def test_no_publisher_key_is_refused(tmp_path: Path) -> None:
    code, out = run("--data", str(tmp_path))
    assert code == 2 and "no publisher key given" in out


def test_malformed_publisher_key_is_refused(tmp_path: Path) -> None:
    code, out = run("--data", str(tmp_path), "--accept-publisher", "nobase64")
    assert code == 2 and "--accept-publisher" in out and "name:base64" in out


@pytest.mark.parametrize("listen", ["9001", "host:", "host:99999", ":9001"])
def test_bad_listen_is_refused(tmp_path: Path, publisher: Publisher, listen: str) -> None:
    code, out = run("--data", str(tmp_path), "--accept-publisher", publisher.public.text(),
                    "--listen", listen)
    assert code == 2 and "is not HOST:PORT" in out


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9001") == ("127.0.0.1", 9001)
    assert parse_listen("[::1]:80") == ("::1", 80)


def test_unreadable_network_file_is_reported(tmp_path: Path) -> None:
    code, out = run("--data", str(tmp_path), "--network", str(tmp_path / "missing.toml"))
    assert code == 1 and "cannot read network file" in out


def test_network_file_publishers_are_accepted(tmp_path: Path, publisher: Publisher) -> None:
    _, other_text = make_publisher("other-1")
    path = tmp_path / "network.toml"
    write_network(init_network(["http://127.0.0.1:1"], 1, 0, [publisher.public]), path)
    keys = gather_publishers(load_network(path), (other_text,))
    assert sorted(keys) == ["other-1", "test-publisher-1"]


def test_one_name_with_two_keys_is_refused(publisher: Publisher) -> None:
    _, impostor = make_publisher(publisher.name)
    with pytest.raises(click.UsageError, match="given twice with different keys"):
        gather_publishers(None, (publisher.public.text(), impostor))


def test_locked_data_dir_is_refused(tmp_path: Path, publisher: Publisher) -> None:
    held = Store.open(tmp_path)
    try:
        code, out = run("--data", str(tmp_path), "--accept-publisher", publisher.public.text(),
                        "--node-id", "node-1")
    finally:
        held.close()
    assert code == 1 and "in use by another node process" in out

"""The ``nixshard node`` command line (in-process; nothing here starts a server)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from aiohttp import web
from click.testing import CliRunner

from nixshard.localnet import new_publisher
from storage_network.config import init_network, load_network, write_network
from storage_network.wire.write_auth import Publisher
from storage_node.appkeys import CONFIG, STORE
from storage_node.cli import gather_publishers, node_command, parse_listen
from storage_node.config import NodeConfig
from storage_node.store import Store


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
    other_text = new_publisher("other-1")[0].public.text()
    path = tmp_path / "network.toml"
    write_network(init_network(["http://127.0.0.1:1"], 1, 0, [publisher.public]), path)
    keys = gather_publishers(load_network(path), (other_text,))
    assert sorted(keys) == ["other-1", "test-publisher-1"]


def test_one_name_with_two_keys_is_refused(publisher: Publisher) -> None:
    impostor = new_publisher(publisher.name)[0].public.text()
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


def network_file(tmp_path: Path, publisher: Publisher) -> Path:
    path = tmp_path / "network.toml"
    write_network(init_network(["http://127.0.0.1:1", "http://127.0.0.1:2"], 1, 0,
                               [publisher.public]), path)
    return path


def started_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   *args: str) -> NodeConfig:
    """The config a ``nixshard node`` run would serve with (the server itself is not run)."""
    seen: list[NodeConfig] = []

    def fake_run_app(app: web.Application, host: str, port: int, **kwargs: object) -> None:
        seen.append(app[CONFIG])
        app[STORE].close()

    monkeypatch.setattr("storage_node.cli.run_app", fake_run_app)
    result = CliRunner().invoke(node_command, ["--data", str(tmp_path / "data"), *args])
    assert result.exit_code == 0, result.output
    (config,) = seen
    return config


def never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a node that would start fail at once instead of serving (no test hangs)."""
    def refuse(app: web.Application, host: str, port: int, **kwargs: object) -> None:
        app[STORE].close()
        raise click.ClickException("the node started")

    monkeypatch.setattr("storage_node.cli.run_app", refuse)


def test_a_node_id_the_network_file_does_not_list_is_refused(
        tmp_path: Path, publisher: Publisher, monkeypatch: pytest.MonkeyPatch) -> None:
    never_serve(monkeypatch)
    path = network_file(tmp_path, publisher)
    code, out = run("--data", str(tmp_path / "data"), "--network", str(path),
                    "--node-id", "node-9")
    assert code == 2
    assert f"--node-id 'node-9' is not a node of {path} (its nodes: node-1, node-2)" \
        in " ".join(out.split())
    assert "would refuse every write" in out
    assert not (tmp_path / "data").exists()


def test_the_default_node_id_must_be_listed_too(tmp_path: Path, publisher: Publisher,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    never_serve(monkeypatch)
    monkeypatch.setattr("storage_node.cli.socket.gethostname", lambda: "builder7.example.org")
    code, out = run("--data", str(tmp_path / "data"), "--network",
                    str(network_file(tmp_path, publisher)))
    assert code == 2
    assert "the default node id (the short host name) 'builder7' is not a node of" \
        in " ".join(out.split())


def test_a_listed_node_id_starts(tmp_path: Path, publisher: Publisher,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = started_config(tmp_path, monkeypatch, "--network",
                            str(network_file(tmp_path, publisher)), "--node-id", "node-2",
                            "--max-body-bytes-in-flight", "1000", "--body-stall-seconds", "2.5")
    assert config.node_id == "node-2"
    assert (config.max_body_bytes_in_flight, config.body_stall_seconds) == (1000, 2.5)


def test_without_a_network_file_the_id_defaults_to_the_short_host_name(
        tmp_path: Path, publisher: Publisher, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("storage_node.cli.socket.gethostname", lambda: "builder7.example.org")
    config = started_config(tmp_path, monkeypatch, "--accept-publisher", publisher.public.text())
    assert config.node_id == "builder7"


@pytest.mark.parametrize("option, value", [("--max-body-bytes-in-flight", "0"),
                                           ("--body-stall-seconds", "0"),
                                           ("--body-stall-seconds", "nan")])
def test_bad_body_limits_are_refused(tmp_path: Path, publisher: Publisher, option: str,
                                     value: str) -> None:
    code, out = run("--data", str(tmp_path / "data"), "--accept-publisher",
                    publisher.public.text(), option, value)
    assert code == 2 and option in out

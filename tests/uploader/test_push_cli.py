"""``nixshard push`` command line: modes, options, progress, failures, config keys."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from nixshard.cli import main
from nixshard.config_file import config_keys
from nixshard.localnet import LocalNetwork, env_with_nix_config, new_publisher
from storage_network.config import init_network, write_network
from tests.support.network import SMALL_CHUNKS, running_network
from uploader.cli import push_command

STORE_PATH = "/nix/store/" + "0" * 32 + "-x"


def invoke(*args: str, command: click.Command = push_command) -> click.testing.Result:
    return CliRunner().invoke(command, list(args))


@pytest.mark.parametrize(("args", "message"), [
    (["--watch-store", STORE_PATH], "give STORE_PATHS or --watch-store, not both"),
    ([], "give STORE_PATHS to push, or --watch-store to push new store paths"),
    (["--watch-interval", "5", STORE_PATH], "--watch-interval applies only with --watch-store"),
    (["--store-dir", "/tmp", STORE_PATH], "--store-dir applies only with --watch-store"),
    (["--jobs", "0", STORE_PATH], "0 is not in the range x>=1"),
    (["--watch-store", "--watch-interval", "0"], "0 is not in the range x>=0.1"),
])
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    res = invoke("--network", str(tmp_path / "unread.toml"), *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr


def key_and_network(tmp_path: Path) -> tuple[Path, Path]:
    """A signing-key file and a network file that lists it (its nodes are never contacted)."""
    publisher, secret = new_publisher("cli-tests-1")
    key = tmp_path / "secret.key"
    key.write_text(secret)
    network = tmp_path / "network.toml"
    write_network(init_network([f"http://127.0.0.1:{9 + i}" for i in range(6)], 4, 2,
                               [publisher.public]), network)
    return key, network


def test_watch_of_a_missing_store_directory_is_a_clear_error(tmp_path: Path) -> None:
    key, network = key_and_network(tmp_path)
    res = invoke("--network", str(network), "--signing-key", str(key), "--watch-store",
                 "--store-dir", str(tmp_path / "no-store"))
    assert res.exit_code == 1
    assert f"cannot list the store directory {tmp_path}/no-store" in res.stderr


def test_new_options_are_config_keys(tmp_path: Path) -> None:
    assert {"jobs", "progress", "watch_store", "watch_interval", "store_dir"} <= set(
        config_keys(push_command))
    key, network = key_and_network(tmp_path)
    config = tmp_path / "push.toml"
    config.write_text(f'network = "{network}"\nsigning_key = "{key}"\njobs = 0\n')
    res = CliRunner().invoke(main, ["push", "--config", str(config), STORE_PATH])
    assert res.exit_code == 2 and "0 is not in the range x>=1" in res.stderr
    config.write_text(f'network = "{network}"\nsigning_key = "{key}"\njobs = 2\n'
                      f'watch_store = true\nstore_dir = "{tmp_path / "none"}"\n')
    res = CliRunner().invoke(main, ["push", "--config", str(config)])
    assert res.exit_code == 1 and "cannot list the store directory" in res.stderr


@dataclass
class Live:
    local: LocalNetwork
    key: Path
    paths: list[str]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A running network and two trees added to the real Nix store."""
    root = tmp_path_factory.mktemp("cli")
    publisher, secret = new_publisher("cli-live-1")
    (root / "secret.key").write_text(secret)
    paths = []
    for n in range(2):
        tree = root / f"nixshard-cli-tree-{n}"
        tree.mkdir()
        (tree / "data").write_bytes(bytes(range(256)) * 1000 * (n + 1))
        paths.append(subprocess.run(["nix-store", "--add", str(tree)], capture_output=True,
                                    text=True, env=env_with_nix_config(),
                                    check=True).stdout.strip())
    with running_network(root / "net", publisher=publisher) as local:
        yield Live(local, root / "secret.key", paths)


@pytest.mark.nix
def test_progress_on_stderr_summary_on_stdout(live: Live) -> None:
    net = str(live.local.network_file)
    res = invoke("--network", net, "--signing-key", str(live.key), "--jobs", "2",
                 "--progress", *live.paths)
    assert res.exit_code == 0, res.output
    assert "pushing NARs" in res.stderr and "pushing NARs" not in res.stdout
    assert "paths pushed:      2" in res.stdout
    res = invoke("--network", net, "--signing-key", str(live.key), *live.paths)
    assert res.exit_code == 0, res.output
    assert "pushing NARs" not in res.output  # stderr is no terminal here
    assert "paths skipped:     2" in res.stdout


@pytest.mark.nix
def test_refused_paths_are_named_and_exit_nonzero(live: Live, tmp_path: Path) -> None:
    """A key the network file lists but the nodes do not accept: every shard is refused."""
    stranger, secret = new_publisher("cli-stranger-1")
    key = tmp_path / "stranger.key"
    key.write_text(secret)
    assert live.local.network is not None
    network = tmp_path / "network.toml"
    write_network(init_network([n.url for n in live.local.network.nodes], 4, 2,
                               [stranger.public], chunking=SMALL_CHUNKS), network)
    fresh = tmp_path / "nixshard-cli-refused"
    fresh.mkdir()
    (fresh / "f").write_text("refused\n")
    path = subprocess.run(["nix-store", "--add", str(fresh)], capture_output=True, text=True,
                          env=env_with_nix_config(), check=True).stdout.strip()
    res = invoke("--network", str(network), "--signing-key", str(key), "--no-progress", path)
    assert res.exit_code == 1
    assert "1 store path(s) not pushed" in res.stderr and path in res.stderr
    assert "paths pushed:      0" in res.stdout and "paths failed:      1" in res.stdout

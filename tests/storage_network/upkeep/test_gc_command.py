"""``nixshard gc``: durations, the dry-run report, refusals (one 6-node network per module)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nixshard.gc_cli import gc_command, parse_duration
from nixshard.localnet import LocalNetwork, new_publisher
from tests.support.disk import fill_up, tmpfs
from tests.support.network import NODES, keyed_network

DAY = 86400.0


@pytest.fixture(scope="module")
def gc_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNetwork, Path]]:
    """A started 6-node network and the path of its publisher's secret-key file."""
    with keyed_network(tmp_path_factory.mktemp("gc-command-net"), "gc-test-1") as net:
        yield net


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * DAY), ("12h", 43200.0),
                                               ("90m", 5400.0), ("45s", 45.0), ("2w", 14 * DAY),
                                               ("600", 600.0), ("1.5h", 5400.0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "30x", "-1d", "1d2h", "3 days"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_gc_command_dry_run_json(gc_net: tuple[LocalNetwork, Path]) -> None:
    local, key_file = gc_net
    result = CliRunner().invoke(gc_command, [
        "--network", str(local.network_file), "--signing-key", str(key_file),
        "--max-age", "3650d", "--max-idle", "3650d", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    assert report["grace_seconds"] == 86400.0
    assert set(report["nodes"]) == {f"node-{i}" for i in range(1, NODES + 1)}


def test_gc_command_text_and_bad_duration(gc_net: tuple[LocalNetwork, Path]) -> None:
    local, key_file = gc_net
    args = ["--network", str(local.network_file), "--signing-key", str(key_file)]
    result = CliRunner().invoke(gc_command, [*args, "--dry-run", "--grace", "1h"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("gc (dry run): ")
    assert "below the network's gc_grace_seconds" in result.stderr
    result = CliRunner().invoke(gc_command, [*args, "--max-age", "soon"])
    assert result.exit_code == 2 and "is not a duration" in result.output


def test_gc_command_refuses_a_key_the_network_does_not_list(
        gc_net: tuple[LocalNetwork, Path], tmp_path: Path) -> None:
    local, _ = gc_net
    other = tmp_path / "other.key"
    other.write_text(new_publisher("someone-else-1")[1])
    result = CliRunner().invoke(gc_command, ["--network", str(local.network_file),
                                             "--signing-key", str(other), "--dry-run"])
    assert result.exit_code == 1 and "does not list publisher key" in result.output


def test_gc_with_a_full_tmpdir_fails_in_one_line_and_deletes_nothing(
        gc_net: tuple[LocalNetwork, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The record table lives in TMPDIR: on a real tmpfs too small for it, gc says where
    and why in one line (no traceback), exits 1, and no node lost a shard."""
    local, key_file = gc_net
    before = sorted(p.name for p in local.node_dir(1).joinpath("shards").rglob("*"))
    with tmpfs(tmp_path / "tiny", 16 * 1024) as tiny:
        fill_up(tiny)
        monkeypatch.setattr(tempfile, "tempdir", str(tiny))
        result = CliRunner().invoke(gc_command, [
            "--network", str(local.network_file), "--signing-key", str(key_file),
            "--grace", "0s"])
    assert result.exit_code == 1, result.output
    assert f"Error: cannot make the record table in {tiny}" in result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) <= 2
    assert sorted(p.name for p in local.node_dir(1).joinpath("shards").rglob("*")) == before

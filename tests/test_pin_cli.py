"""``nixshard pin add | remove | list`` and what ``nixshard gc --dry-run`` says of pins,
against one 6-node network of real node processes (module scope)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from nix_formats.store_path import StorePath
from nixshard.gc_cli import gc_command
from nixshard.localnet import LocalNetwork
from nixshard.pin_cli import pin_group
from storage_network import NetworkClient
from tests.support.network import keyed_network
from tests.support.records import publish_path, store_path

DAY = 86400.0


@pytest.fixture(scope="module")
def pin_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNetwork, Path]]:
    """A started 6-node network and its publisher's secret-key file."""
    with keyed_network(tmp_path_factory.mktemp("pin-cli"), "pin-cli-1") as net:
        yield net


def publish(local: LocalNetwork, *paths: tuple[StorePath, tuple[StorePath, ...], float],
            seed: int) -> None:
    """Publish narinfo records of ``(path, references, age in seconds)``."""
    async def run() -> None:
        assert local.network is not None
        async with NetworkClient(local.network, timeout=10.0) as net:
            for i, (path, refs, age) in enumerate(paths):
                await publish_path(net, local.publisher, path, refs, seed=seed + i,
                                   size=8_000, age=age)

    asyncio.run(run())


def pin(local: LocalNetwork, key_file: Path | None, *args: str) -> Result:
    """``nixshard pin ARGS`` with the network (and the signing key for add/remove)."""
    command, rest = args[0], list(args[1:])
    options = ["--network", str(local.network_file)]
    if key_file is not None:
        options += ["--signing-key", str(key_file)]
    runner = CliRunner(env={"NIXSHARD_CACHE_SECRET": "", "NIXSHARD_SIGNING_KEY": ""})
    return runner.invoke(pin_group, [command, *options, *rest])


def test_add_list_remove(pin_net: tuple[LocalNetwork, Path], tmp_path: Path) -> None:
    local, key_file = pin_net
    a, b, c = (store_path(700 + i, f"cli-rel-{i}") for i in range(3))
    publish(local, (a, (), 0.0), (b, (), 0.0), (c, (), 0.0), seed=700)

    res = pin(local, key_file, "add", "cli/main", a.path)
    assert res.exit_code == 0, res.output
    assert res.stdout == f"pin cli/main (1 paths)\n  {a.path}\n"
    result_link = tmp_path / "result"
    result_link.symlink_to(b.path)  # ./result leads to a store path (absent here: fine)
    res = pin(local, key_file, "add", "cli/main", str(result_link), "--keep", "2", "--json")
    assert res.exit_code == 0, res.output
    added = json.loads(res.stdout)
    record_bytes = added.pop("record_bytes")
    assert type(record_bytes) is int and record_bytes > 0, record_bytes
    assert added == {"name": "cli/main", "keep": 2, "paths": [b.path, a.path], "dropped": []}
    res = pin(local, key_file, "add", "cli/main", c.path)
    assert res.exit_code == 0, res.output
    assert res.stdout == (f"pin cli/main (2 paths, keep 2)\n  {c.path}\n  {b.path}\n"
                          f"dropped {a.path} (beyond keep 2)\n")
    res = pin(local, key_file, "add", "cli/other", a.path)
    assert res.exit_code == 0, res.output

    res = pin(local, None, "list", "cli/main")
    assert res.exit_code == 0 and res.stdout == (
        f"pin cli/main (2 paths, keep 2)\n  {c.path}\n  {b.path}\n"), res.output
    res = pin(local, None, "list", "--json")
    assert res.exit_code == 0, res.output
    listed = {p["name"]: p for p in json.loads(res.stdout)["pins"]}
    assert listed["cli/main"] == {"name": "cli/main", "keep": 2, "paths": [c.path, b.path]}
    assert listed["cli/other"]["paths"] == [a.path]
    assert json.loads(res.stdout)["unread"] == []

    res = pin(local, key_file, "remove", "cli/main", c.path)
    assert res.exit_code == 0 and res.stdout == f"unpinned {c.path} from cli/main\n"
    res = pin(local, key_file, "remove", "cli/other")
    assert res.exit_code == 0, res.output
    assert res.stdout == f"unpinned {a.path} from cli/other\npin cli/other holds no path now\n"
    res = pin(local, None, "list", "cli/other")
    assert res.exit_code == 1 and "there is no pin named cli/other" in res.output
    res = pin(local, None, "list", "--json")
    assert "cli/other" not in {p["name"] for p in json.loads(res.stdout)["pins"]}
    res = pin(local, key_file, "remove", "cli/other")
    assert res.exit_code == 1 and "there is no pin named cli/other" in res.output


def test_refusals(pin_net: tuple[LocalNetwork, Path], tmp_path: Path) -> None:
    local, key_file = pin_net
    absent = store_path(710, "never-pushed")
    res = pin(local, key_file, "add", "cli/refused", absent.path)
    assert res.exit_code == 1
    assert f"not in the network (push them first): {absent.path}" in res.output
    res = pin(local, key_file, "add", "bad name", absent.path)
    assert res.exit_code == 1 and "'bad name' is not a pin name" in res.output
    res = pin(local, key_file, "add", "cli/refused", str(tmp_path / "nothing-here"))
    assert res.exit_code == 2 and "does not exist" in res.output
    res = pin(local, key_file, "add", "cli/refused", absent.path, "--keep", "0")
    assert res.exit_code == 2 and "--keep" in res.output
    res = pin(local, key_file, "add", "cli/refused")
    assert res.exit_code == 2 and "Missing argument 'STORE_PATH...'" in res.output
    res = pin(local, None, "add", "cli/refused", absent.path)
    assert res.exit_code == 1 and "NIXSHARD_SIGNING_KEY" in res.output
    keyring = tmp_path / "cache.keyring"
    keyring.write_text("cli-secret-1:" + "A" * 43 + "=\n")
    res = pin(local, None, "list", "--cache-secret", str(keyring))
    assert res.exit_code == 1 and "does not say private = true" in res.output


def test_gc_dry_run_says_what_goes_what_stays_and_why(
        pin_net: tuple[LocalNetwork, Path]) -> None:
    local, key_file = pin_net
    dep, rel, top, lonely = (store_path(720, "gc-dep"), store_path(721, "gc-rel"),
                             store_path(722, "gc-top"), store_path(723, "gc-lonely"))
    publish(local, (dep, (), 40 * DAY), (rel, (dep,), 40 * DAY), (top, (dep,), 0.0),
            (lonely, (), 40 * DAY), seed=720)
    res = pin(local, key_file, "add", "cli/gc", rel.path)
    assert res.exit_code == 0, res.output
    args = ["--network", str(local.network_file), "--signing-key", str(key_file),
            "--max-age", "30d", "--dry-run"]

    text = CliRunner().invoke(gc_command, args)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].startswith("gc (dry run): ")
    assert (f"  would expire record {lonely.hash_part} ({lonely.basename}): "
            "age: created 40.0 d ago (max 30.0 d)") in [ln.split(" (nodes")[0] for ln in lines]
    assert (f"  keep record {rel.hash_part} ({rel.basename}): pinned by cli/gc "
            "(due by age: created 40.0 d ago (max 30.0 d))") in lines
    assert (f"  keep record {dep.hash_part} ({dep.basename}): pinned by cli/gc "
            f"(referenced by {rel.basename}) (due by age: created 40.0 d ago (max 30.0 d))"
            ) in lines
    assert "  pin cli/gc: 1 paths, keeps 2 records" in lines
    assert any(ln.startswith("  node-1: ") and "unreferenced shards" in ln for ln in lines)

    res = CliRunner().invoke(gc_command, [*args, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["closure_checked"] is True and report["dry_run"] is True
    (gone,) = [e for e in report["expired_records"] if e["key"] == lonely.hash_part]
    assert gone["label"] == lonely.basename and gone["reason"].startswith("age: ")
    kept = {r["key"]: r for r in report["retained_records"]}
    assert kept[dep.hash_part]["kept_because"] == (
        f"pinned by cli/gc (referenced by {rel.basename})")
    assert kept[dep.hash_part]["expired_by"].startswith("age: created 40.0 d ago")
    assert top.hash_part not in kept, "a young path is kept without a reason to list"
    (summary,) = [p for p in report["pins"] if p["name"] == "cli/gc"]
    assert (summary["paths"], summary["closure_records"]) == (1, 2)
    assert report["cutoff"] == pytest.approx(report["started"] - report["grace_seconds"])

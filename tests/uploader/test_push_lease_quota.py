"""``nixshard push`` with leases and quotas, on real node processes: ``--lease`` signs an
end into every record and renews a path held with an earlier one; a node's quota
refusal stops the push, and the refused paths get no record."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from nix_formats.keys import SecretKey
from nix_formats.store_path import StorePath
from nixshard.localnet import new_publisher
from storage_network.client import NetworkClient
from storage_network.errors import NotFoundError
from storage_network.read.record_lookup import fetch_record
from tests.storage_network.quota_net import quota_network
from tests.support.network import running_network
from uploader.cli import push_command
from uploader.closure import PathInfo
from uploader.errors import PushFailedError
from uploader.lease import lease_end, parse_duration
from uploader.push import PushSummary, push_closure, push_path

NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"


def tree_path(root: Path, name: str, size: int) -> PathInfo:
    """A store path ``name`` whose tree is one file of ``size`` random bytes."""
    tree = root / name
    tree.mkdir()
    (tree / "data").write_bytes(os.urandom(size))
    digest = hashlib.sha256(name.encode()).digest()
    hash_part = "".join(NIX32[b % 32] for b in digest[:32])
    return PathInfo(StorePath(hash_part, name), str(tree))


def test_lease_durations_and_ends() -> None:
    assert parse_duration("2d") == 2 * 86400 and parse_duration("90") == 90
    assert lease_end(None, 1000.5) is None
    assert lease_end(60, 1000.5) == 1061
    for bad in ("soon", "-1d", "1y"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError):
        lease_end(0, 1000)


def test_lease_is_signed_and_a_later_one_renews(tmp_path: Path) -> None:
    publisher, secret = new_publisher("lease-push-1")
    info = tree_path(tmp_path, "leased", 30_000)
    with running_network(tmp_path / "net", publisher=publisher) as local:
        network = local.network
        assert network is not None

        async def push(expires: int | None) -> tuple[bool, int | None]:
            async with NetworkClient(network) as net:
                pushed = await push_path(net, info, SecretKey.parse(secret), publisher,
                                         PushSummary(), expires)
                return pushed, (await fetch_record(net, info.store_path.hash_part)).expires

        async def run() -> None:
            end = 2_000_000_000
            assert await push(end) == (True, end)
            assert await push(end) == (False, end), "the same end renews nothing"
            assert await push(end - 100) == (False, end), "an earlier end renews nothing"
            assert await push(end + 100) == (True, end + 100), "a later end renews"
            assert await push(None) == (True, None), "no lease: kept for good"
            assert await push(end + 500) == (False, None), "a record for good stays so"

        asyncio.run(run())


def test_quota_refusal_stops_the_push_and_commits_no_refused_path(tmp_path: Path) -> None:
    publisher, secret = new_publisher("quota-push-2")
    infos = [tree_path(tmp_path, f"p{i}", 200_000) for i in range(6)]
    with quota_network(tmp_path / "net", publisher, 80_000) as local:
        network = local.network
        assert network is not None

        async def run() -> PushFailedError:
            async with NetworkClient(network) as net:
                with pytest.raises(PushFailedError) as caught:
                    await push_closure(net, infos, SecretKey.parse(secret), publisher, jobs=1)
                failed = caught.value.failures
                for info in infos:
                    path = info.store_path.path
                    if path in failed:
                        with pytest.raises(NotFoundError):
                            await fetch_record(net, info.store_path.hash_part)
                    else:
                        await fetch_record(net, info.store_path.hash_part)
                return caught.value

        failure = asyncio.run(run())
    summary = failure.summary
    assert summary.quota is not None and summary.quota.startswith(
        f"quota exceeded: publisher {publisher.name} keeps ")
    assert summary.pushed, "some paths fit before the quota was reached"
    reasons = list(failure.failures.values())
    assert any(why.startswith("not pushed: quota exceeded: ") for why in reasons), reasons
    assert any(why.startswith("not pushed: the push stopped (quota exceeded: ")
               for why in reasons), "paths not started when the quota was met are not pushed"


def test_lease_only_with_store_paths(tmp_path: Path) -> None:
    result = CliRunner().invoke(push_command, ["--network", str(tmp_path / "none.toml"),
                                               "--watch-store", "--lease", "1d"])
    assert result.exit_code == 2 and "--lease applies only to STORE_PATHS" in result.output
    result = CliRunner().invoke(push_command, ["--network", str(tmp_path / "none.toml"),
                                               "--lease", "soon", "/nix/store/x"])
    assert result.exit_code == 2 and "not a duration" in result.output

"""Parallel push on real node processes: records in dependency order, failures contained."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nix_formats.keys import SecretKey
from nix_formats.narinfo import NarInfo
from nixshard.demo import tree_path_info
from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.client import NetworkClient
from storage_network.config import Network
from storage_network.errors import NotFoundError
from storage_network.read.record_lookup import fetch_record
from storage_network.wire.write_auth import Publisher
from tests.support.network import running_network
from tests.support.trees import make_tree
from uploader.closure import PathInfo
from uploader.errors import NixQueryError, PushFailedError
from uploader.push import PushSummary, format_summary, push_closure


@dataclass
class Pushing:
    """A running network and the key to push with."""

    local: LocalNetwork
    network: Network
    nix_key: SecretKey
    publisher: Publisher


def pushing(local: LocalNetwork, secret_text: str) -> Pushing:
    assert local.network is not None
    return Pushing(local, local.network, SecretKey.parse(secret_text), local.publisher)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushing]:
    """One 6-node network (4-of-6, small chunks) for the tests of this module."""
    publisher, secret_text = new_publisher("parallel-push-1")
    with running_network(tmp_path_factory.mktemp("net"), publisher=publisher) as local:
        yield pushing(local, secret_text)


def tree_info(root: Path, name: str, *refs: PathInfo, size: int = 20_000,
              seed: int | None = None) -> PathInfo:
    """A pushable path for a fresh tree, referring to ``refs``."""
    info = tree_path_info(make_tree(root, name, size, hash(name) if seed is None else seed))
    return dataclasses.replace(info, references=tuple(sorted(r.store_path.path for r in refs)))


async def has_record(network: Network, info: PathInfo) -> bool:
    async with NetworkClient(network) as client:
        try:
            await fetch_record(client, info.store_path.hash_part)
        except NotFoundError:
            return False
    return True


def push(p: Pushing, infos: list[PathInfo], jobs: int, on_done=None) -> PushSummary:  # type: ignore[no-untyped-def]
    async def run() -> PushSummary:
        async with NetworkClient(p.network) as client:
            return await push_closure(client, infos, p.nix_key, p.publisher, jobs=jobs,
                                      on_done=on_done)
    return asyncio.run(run())


def test_failed_reference_blocks_its_dependents_and_nothing_else(
        net: Pushing, tmp_path: Path) -> None:
    good = tree_info(tmp_path, "good", size=200_000)
    uses_good = tree_info(tmp_path, "uses-good", good)
    # A path whose NAR differs from what the Nix database says: it must fail.
    bad = dataclasses.replace(tree_info(tmp_path, "bad", size=100_000), nar_hash=bytes(32))
    uses_bad = tree_info(tmp_path, "uses-bad", bad, good)
    uses_uses_bad = tree_info(tmp_path, "uses-uses-bad", uses_bad)
    lone = tree_info(tmp_path, "lone")
    infos = [good, uses_good, bad, uses_bad, uses_uses_bad, lone]

    with pytest.raises(PushFailedError) as caught:
        push(net, infos, jobs=4)

    failures = caught.value.failures
    assert set(failures) == {bad.store_path.path, uses_bad.store_path.path,
                             uses_uses_bad.store_path.path}
    assert "differs from the Nix database" in failures[bad.store_path.path]
    assert failures[uses_bad.store_path.path] == \
        f"not committed: its reference {bad.store_path.path} was not pushed"
    assert bad.store_path.path in str(caught.value)
    assert uses_bad.store_path.path in failures[uses_uses_bad.store_path.path]
    summary = caught.value.summary
    assert sorted(summary.pushed) == sorted(i.store_path.path for i in (good, uses_good, lone))
    assert "paths failed:      3" in format_summary(summary, 4, 2)
    present = {i.store_path.name: asyncio.run(has_record(net.network, i)) for i in infos}
    assert present == {good.store_path.name: True, uses_good.store_path.name: True,
                       lone.store_path.name: True, bad.store_path.name: False,
                       uses_bad.store_path.name: False, uses_uses_bad.store_path.name: False}


def test_records_are_written_after_their_references(net: Pushing, tmp_path: Path) -> None:
    # A wide base whose payload takes longest, and small paths above it that
    # finish their shards first: their records must still wait.
    base = tree_info(tmp_path, "base", size=1_500_000)
    mids = [tree_info(tmp_path, f"mid-{i}", base) for i in range(4)]
    top = tree_info(tmp_path, "top", *mids)
    side = tree_info(tmp_path, "side", size=5_000)
    infos = [top, side, *reversed(mids), base]  # any order in: the push orders them
    committed: list[str] = []
    summary = push(net, infos, jobs=4, on_done=lambda i, pushed: committed.append(
        i.store_path.path))
    assert summary.failed == {}
    assert sorted(committed) == sorted(i.store_path.path for i in infos)
    assert summary.pushed == committed
    position = {path: n for n, path in enumerate(committed)}
    for info in infos:
        for ref in info.references:
            assert position[ref] < position[info.store_path.path], (ref, info.store_path.path)
    again = push(net, infos, jobs=4)
    assert again.pushed == [] and sorted(again.skipped) == sorted(committed)


def test_one_job_and_four_jobs_write_the_same_records(tmp_path: Path) -> None:
    base = tree_info(tmp_path, "base", size=300_000, seed=1)
    mids = [tree_info(tmp_path, f"mid-{i}", base, seed=10 + i) for i in range(3)]
    infos = [base, *mids, tree_info(tmp_path, "top", *mids, seed=20)]
    records: list[dict[str, tuple[bytes, bytes]]] = []
    publisher, secret_text = new_publisher("parallel-push-1")
    for jobs in (1, 4):
        with running_network(tmp_path / f"net-{jobs}", publisher=publisher) as local:
            p = pushing(local, secret_text)
            summary = push(p, infos, jobs=jobs)
            assert len(summary.pushed) == len(infos)

            async def read_all(network: Network) -> dict[str, tuple[bytes, bytes]]:
                async with NetworkClient(network) as client:
                    found = {}
                    for info in infos:
                        rec = await fetch_record(client, info.store_path.hash_part)
                        found[info.store_path.path] = (rec.metadata, rec.manifest.encode())
                    return found

            records.append(asyncio.run(read_all(p.network)))
    one, four = records
    assert one == four
    narinfo = NarInfo.parse(one[infos[-1].store_path.path][0].decode())
    assert sorted(r for r in narinfo.references) == sorted(
        m.store_path.basename for m in mids)


def test_bad_jobs_and_cycles_are_refused(net: Pushing, tmp_path: Path) -> None:
    lone = tree_info(tmp_path, "lone")
    with pytest.raises(ValueError, match="jobs must be at least 1, not 0"):
        push(net, [lone], jobs=0)
    a = tree_info(tmp_path, "a")
    b = tree_info(tmp_path, "b", a)
    a = dataclasses.replace(a, references=(b.store_path.path,))
    with pytest.raises(NixQueryError, match="reference cycle"):
        push(net, [a, b], jobs=2)
    assert not asyncio.run(has_record(net.network, b))

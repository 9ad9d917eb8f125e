"""Uploader: closure order, NAR checks, and what a failed push leaves behind."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from nix_formats.keys import SecretKey
from nix_formats.nar import dump_path
from nix_formats.store_path import StorePath
from nixshard.localnet import new_publisher
from storage_network.client import NetworkClient
from storage_network.errors import NotFoundError
from storage_network.read.record_lookup import fetch_record
from tests.support.network import running_network
from uploader.closure import PathInfo, topological_order
from uploader.errors import NixQueryError, PushError
from uploader.narstream import HashingStream
from uploader.push import PushSummary, format_summary, push_path


def info(name: str, *refs: str) -> PathInfo:
    h = hashlib.sha256(name.encode()).hexdigest()
    alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
    hash_part = "".join(alphabet[int(c, 16) * 2] for c in h[:32])
    return PathInfo(StorePath(hash_part, name), "/nonexistent",
                    references=tuple(refs))


def test_topological_order_puts_references_first() -> None:
    c = info("c")
    b = info("b", c.store_path.path)
    a = info("a", b.store_path.path, c.store_path.path, "/nix/store/" + "0" * 32 + "-outside")
    self_ref = info("s")
    self_ref = PathInfo(self_ref.store_path, "/x", references=(self_ref.store_path.path,))
    order = [i.store_path.name for i in topological_order([a, self_ref, b, c])]
    assert order.index("c") < order.index("b") < order.index("a")
    assert sorted(order) == ["a", "b", "c", "s"]


def test_reference_cycle_is_an_error() -> None:
    a0, b0 = info("a"), info("b")
    a = PathInfo(a0.store_path, "/x", references=(b0.store_path.path,))
    b = PathInfo(b0.store_path, "/x", references=(a0.store_path.path,))
    with pytest.raises(NixQueryError, match="reference cycle"):
        topological_order([a, b])


def test_hashing_stream_counts_what_passes(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 100_000)
    stream = HashingStream(dump_path(tmp_path))
    data = b"".join(stream)
    assert stream.size == len(data) and stream.sha256 == hashlib.sha256(data).digest()


def test_nar_that_differs_from_nix_database_is_refused(tmp_path: Path) -> None:
    """A modified store path: shards may land, but no record is visible to readers."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(b"hello" * 50_000)
    publisher, secret = new_publisher("push-tests-1")
    bogus = PathInfo(info("tampered").store_path, str(tree), nar_hash=bytes(32), nar_size=1)
    with running_network(tmp_path / "net", publisher=publisher) as local:
        network = local.network
        assert network is not None

        async def run() -> PushSummary:
            summary = PushSummary()
            async with NetworkClient(network) as net:
                with pytest.raises(PushError, match="differs from the Nix database"):
                    await push_path(net, bogus, SecretKey.parse(secret), publisher, summary)
                with pytest.raises(NotFoundError):
                    await fetch_record(net, bogus.store_path.hash_part)
            return summary

        summary = asyncio.run(run())
    assert summary.pushed == [] and summary.record_bytes == 0
    assert "paths pushed:      0" in format_summary(summary, 4, 2)

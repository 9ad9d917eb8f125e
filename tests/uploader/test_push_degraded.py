"""A push with nodes missing (real node processes): degraded commit, summary, refusal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nixshard.localnet import new_publisher
from tests.support.network import running_network
from uploader.errors import PushFailedError
from uploader.push import format_summary

from .test_parallel_push import has_record, push, pushing, tree_info


def test_one_node_down_commits_degraded_and_says_so(tmp_path: Path) -> None:
    """6 nodes, 4-of-6, one dead: every chunk gets 5 shards; the push succeeds and its
    summary names the degraded chunks and the node passed over."""
    publisher, secret = new_publisher("push-degraded-1")
    base = tree_info(tmp_path, "base", size=200_000, seed=31)
    top = tree_info(tmp_path, "top", base, size=50_000, seed=32)
    with running_network(tmp_path / "net", publisher=publisher) as local:
        local.nodes[2].kill()
        p = pushing(local, secret)
        summary = push(p, [top, base], jobs=2)
        assert sorted(summary.pushed) == sorted(i.store_path.path for i in (base, top))
        degraded = summary.stats.degraded_chunks
        assert degraded == summary.stats.chunks > 0
        text = format_summary(summary, 4, 2)
        assert f"degraded:          {degraded} chunks degraded: run nixshard repair" in text
        assert "passed over:       node-3: node node-3: POST /shards/has failed" in text
        assert asyncio.run(has_record(p.network, top))


def test_two_nodes_down_of_six_commits_nothing(tmp_path: Path) -> None:
    """Below k + 1 shards a chunk: the path fails and no record is written."""
    publisher, secret = new_publisher("push-degraded-2")
    lone = tree_info(tmp_path, "lone", size=100_000, seed=33)
    with running_network(tmp_path / "net", publisher=publisher) as local:
        local.nodes[0].kill()
        local.nodes[4].kill()
        p = pushing(local, secret)
        with pytest.raises(PushFailedError) as caught:
            push(p, [lone], jobs=1)
        why = caught.value.failures[lone.store_path.path]
        assert "4 of 6 shards stored, at least 5 needed" in why
        assert caught.value.summary.pushed == []
        assert not asyncio.run(has_record(p.network, lone))

"""The push side of garbage collection: reused shards touched, the push window, the grace.

A push touches every shard it reuses and refuses to write its record once
more than ``gc_grace_seconds / 2`` have passed since the first touch; this is
what keeps a collection racing a push from deleting its shards
(:mod:`storage_network.upkeep.gc`).  Runs against real node processes (one
6-node network, k=4, m=2, per module).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork
from storage_network.client import NetworkClient
from storage_network.config import init_network, load_network, parse_network
from storage_network.errors import NetworkFileError, NodeError, NotFoundError
from storage_network.read.record_lookup import fetch_record
from storage_network.wire.write_auth import Publisher
from storage_network.write.publish import check_push_window, publish_record, store_payload

from ..conftest import NODES, payload, record_key, stripe_ids


async def test_a_push_touches_the_shards_it_reuses(net: NetworkClient, publisher: Publisher,
                                                   local: LocalNetwork) -> None:
    data = payload(6001, 50_000)
    first, stats = await store_payload(net, publisher, [data])
    assert stats.touched_at is not None and abs(stats.touched_at - time.time()) < 60
    paths = [local.node_dir(i) / "shards" / sid[:2] / sid
             for sid in stripe_ids(first) for i in range(1, NODES + 1)]
    paths = [p for p in paths if p.exists()]
    assert len(paths) == len(stripe_ids(first))
    for path in paths:
        os.utime(path, (1e9, 1e9))
    start = time.time()
    again, stats2 = await store_payload(net, publisher, [data])
    assert again == first and stats2.chunks_reused == stats2.chunks
    assert all(p.stat().st_mtime >= start - 1 for p in paths)


async def test_a_record_after_half_the_grace_is_refused(net: NetworkClient,
                                                        publisher: Publisher) -> None:
    key = record_key(6501)
    manifest, stats = await store_payload(net, publisher, [payload(6501, 20_000)])
    half = net.network.gc_grace_seconds / 2
    with pytest.raises(NodeError, match="push took longer than gc_grace_seconds"):
        await publish_record(net, publisher, key, b"meta", manifest,
                             touched_at=time.time() - half - 5)
    with pytest.raises(NotFoundError):
        await fetch_record(net, key)
    check_push_window(net, None)
    check_push_window(net, 1000.0, now=1000.0 + half)
    with pytest.raises(NodeError, match="push again"):
        check_push_window(net, 1000.0, now=1000.0 + half + 1)
    await publish_record(net, publisher, key, b"meta", manifest, touched_at=stats.touched_at)
    assert (await fetch_record(net, key)).manifest == manifest


def test_gc_grace_seconds_in_the_network_file(tmp_path: Path) -> None:
    nodes = [{"id": f"node-{i}", "url": f"http://127.0.0.1:{9000 + i}"} for i in (1, 2, 3)]
    assert parse_network({"k": 2, "m": 1, "nodes": nodes}).gc_grace_seconds == 86400
    network = init_network([n["url"] for n in nodes], 2, 1, gc_grace_seconds=3600)
    assert network.to_toml()["gc_grace_seconds"] == 3600
    path = tmp_path / "network.toml"
    path.write_text("k = 2\nm = 1\ngc_grace_seconds = 3600\n" + "".join(
        f'[[nodes]]\nid = "{n["id"]}"\nurl = "{n["url"]}"\n' for n in nodes))
    assert load_network(path) == network
    for bad, message in ((1, "at least 2"), ("1d", "must be a int"), (True, "must be a int")):
        with pytest.raises(NetworkFileError, match=message):
            parse_network({"k": 2, "m": 1, "nodes": nodes, "gc_grace_seconds": bad})

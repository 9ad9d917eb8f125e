"""publish_record writes the record window: arbiter first, then R nodes (docs/consistency.md).

Real node processes (6 nodes, 4-of-6, R = 3: the window is the first 5 nodes of
a key's ranking); the record files on the nodes' disks say where it went.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import partial

import pytest
from aiohttp import web

from nixshard.localnet import LocalNetwork
from storage_network.client import NetworkClient
from storage_network.config import Network, NodeInfo
from storage_network.errors import NodeError, RecordConflictError
from storage_network.nodes.placement import record_nodes
from storage_network.read.record_lookup import fetch_record
from storage_network.wire.manifest import ChunkRef, Manifest
from storage_network.wire.record import Record, open_record, seal_record, seal_tombstone
from storage_network.write.publish import publish_record, store_payload
from storage_network.write.record_write import Refusal, judge_refusal
from tests.support.servers import serve_app

from ..conftest import M, network_client, payload, record_key
from .write_faults import stopped

R = 3


client = partial(network_client, record_replicas=R)


def holders(local: LocalNetwork, key: str) -> set[str]:
    """Ids of the nodes whose disk holds a record file for ``key``."""
    return {f"node-{i}" for i in range(1, len(local.nodes) + 1)
            if (local.node_dir(i) / "records" / key).is_file()}


def ranked(local: LocalNetwork, key: str) -> list[str]:
    assert local.network is not None
    return [n.id for n in record_nodes(local.network.nodes, key)]


async def stored(net: NetworkClient, local: LocalNetwork, seed: int) -> Manifest:
    manifest, _ = await store_payload(net, local.publisher, [payload(seed, 20_000)])
    return manifest


async def test_all_up_the_record_goes_to_the_first_r_nodes(fresh_net: LocalNetwork) -> None:
    key = record_key(8001)
    async with client(fresh_net) as net:
        await publish_record(net, fresh_net.publisher, key, b"meta", await stored(
            net, fresh_net, 8001))
    assert holders(fresh_net, key) == set(ranked(fresh_net, key)[:R])


async def test_a_dead_arbiter_is_passed_over(fresh_net: LocalNetwork) -> None:
    key = record_key(8002)
    order = ranked(fresh_net, key)
    async with client(fresh_net) as net:
        manifest = await stored(net, fresh_net, 8002)
        fresh_net.node(order[0]).kill()
        await publish_record(net, fresh_net.publisher, key, b"meta", manifest)
        assert holders(fresh_net, key) == set(order[1:R + 1])
        assert (await fetch_record(net, key)).manifest == manifest


async def test_m_dead_window_nodes_still_give_r_replicas(fresh_net: LocalNetwork) -> None:
    key = record_key(8003)
    order = ranked(fresh_net, key)
    async with client(fresh_net) as net:
        manifest = await stored(net, fresh_net, 8003)
        for node_id in (order[0], order[2]):
            fresh_net.node(node_id).kill()
        await publish_record(net, fresh_net.publisher, key, b"meta", manifest)
        assert holders(fresh_net, key) == {order[1], order[3], order[4]}


async def test_fewer_than_r_window_nodes_fail_and_a_second_publish_completes(
        fresh_net: LocalNetwork) -> None:
    """Three of the five window nodes down: two take it, NodeError; nothing outside the
    window is written; once they are back, publishing again completes the record."""
    key = record_key(8004)
    order = ranked(fresh_net, key)
    down = [order[0], order[1], order[3]]
    async with client(fresh_net) as net:
        manifest = await stored(net, fresh_net, 8004)
        for node_id in down:
            fresh_net.node(node_id).kill()
        with pytest.raises(NodeError, match=rf"record {key} stored on 2 of the 3 nodes needed: "
                                            rf"node {order[0]}: PUT /records/{key} failed"):
            await publish_record(net, fresh_net.publisher, key, b"meta", manifest)
        assert holders(fresh_net, key) == {order[2], order[4]}
        for node_id in down:
            fresh_net.restart_node(int(node_id.split("-")[1]))
        await publish_record(net, fresh_net.publisher, key, b"meta", manifest)
        assert holders(fresh_net, key) == {order[0], order[2], order[4]} | set(order[:R])
        assert (await fetch_record(net, key)).manifest == manifest


async def test_a_stopped_window_node_is_raced(fresh_net: LocalNetwork) -> None:
    """A SIGSTOPped second node: the client would wait 600 s; the write asks the next
    window node after hedge_after and is done once R nodes hold the record."""
    key = record_key(8005)
    order = ranked(fresh_net, key)
    async with client(fresh_net, timeout=600.0) as net:
        manifest = await stored(net, fresh_net, 8005)
        with stopped(fresh_net.node(order[1])):
            async with asyncio.timeout(120):  # a bound on waiting, far below 600 s
                await publish_record(net, fresh_net.publisher, key, b"meta", manifest)
            assert {order[0], order[2], order[3]} <= holders(fresh_net, key)


# --- the node's 409, judged by the writer ---------------------------------------------


def test_judge_refusal_follows_the_replacement_rule(fresh_net: LocalNetwork) -> None:
    """What a 409 means, from the version the node holds (no network involved)."""
    pub = fresh_net.publisher
    keys = {pub.name: pub.public}
    key = record_key(8006)
    empty = Manifest("isa_l_rs_cauchy", 4, 2, ())
    other = Manifest("isa_l_rs_cauchy", 4, 2, (ChunkRef(bytes(32), bytes(32), 1, 1),))

    def rec(manifest: Manifest, created: int) -> Record:
        return open_record(keys, key, seal_record(pub, key, b"m", manifest, created=created))

    old, new = rec(empty, 100), rec(empty, 200)
    conflicting = rec(other, 300)
    tomb = open_record(keys, key, seal_tombstone(pub, key, "isa_l_rs_cauchy", 4, 2, 250))
    assert judge_refusal(new, old) is Refusal.STORED          # newer, same content
    assert judge_refusal(old, old) is Refusal.STORED          # the same bytes
    assert judge_refusal(old, conflicting) is Refusal.CONFLICT
    assert judge_refusal(conflicting, new) is Refusal.CONFLICT
    assert judge_refusal(tomb, new) is Refusal.SUPERSEDED     # deleted after it was sealed
    assert judge_refusal(conflicting, tomb) is Refusal.SUPERSEDED
    assert judge_refusal(old, new) is Refusal.BOGUS           # a newer one must be taken


@pytest.fixture
async def liar() -> AsyncIterator[str]:
    """A hostile node on 127.0.0.1: refuses every record PUT with 409, holds nothing."""
    async def refuse(_: web.Request) -> web.Response:
        return web.Response(status=409, text="newer version held")

    async def absent(_: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_put("/records/{key}", refuse)
    app.router.add_get("/records/{key}", absent)
    async with serve_app(app) as url:
        yield url


async def test_a_false_409_from_the_arbiter_is_passed_over(
        fresh_net: LocalNetwork, liar: str) -> None:
    """The top window node answers 409 but holds no version: a lie, not a conflict."""
    assert fresh_net.network is not None
    key = record_key(8007)
    order = ranked(fresh_net, key)
    nodes = tuple(NodeInfo(n.id, liar) if n.id == order[0] else n
                  for n in fresh_net.network.nodes)
    network = Network(**{**fresh_net.network.__dict__, "nodes": nodes})
    async with NetworkClient(network, timeout=10.0) as net:
        manifest = await stored(net, fresh_net, 8007)
        await publish_record(net, fresh_net.publisher, key, b"meta", manifest)
        assert net.health.standing(order[0]).name == "BENCHED"
    assert holders(fresh_net, key) == set(order[1:R + 1])


# --- one path, one record (needs the node's 409 of docs/consistency.md) -----------------


async def test_another_content_at_the_arbiter_is_a_conflict_and_writes_nothing(
        fresh_net: LocalNetwork) -> None:
    key = record_key(8008)
    order = ranked(fresh_net, key)
    async with client(fresh_net) as net:
        first = await stored(net, fresh_net, 8008)
        second = await stored(net, fresh_net, 8009)
        await publish_record(net, fresh_net.publisher, key, b"first", first)
        fresh_net.node(order[1]).kill()  # the second writer would reach order[3]
        with pytest.raises(RecordConflictError, match="record of another content"):
            await publish_record(net, fresh_net.publisher, key, b"second", second)
        assert holders(fresh_net, key) == set(order[:R])
        assert (await fetch_record(net, key)).manifest == first


async def test_a_newer_version_of_the_same_content_counts_as_stored(
        fresh_net: LocalNetwork) -> None:
    """The window already holds a newer record of the same payload (sealed 100 s ahead):
    every node refuses the publisher's (409), and that counts as stored."""
    key = record_key(8010)
    pub = fresh_net.publisher
    async with client(fresh_net) as net:
        manifest = await stored(net, fresh_net, 8010)
        newer = seal_record(pub, key, b"newer", manifest, created=int(time.time()) + 100)
        for node_id in ranked(fresh_net, key)[:R + M]:
            await net.nodes[node_id].put_record(key, newer, pub)
        await publish_record(net, pub, key, b"older", manifest)
        assert (await fetch_record(net, key)).metadata == b"newer"
    for node_id in ranked(fresh_net, key)[:R + M]:
        assert (fresh_net.node_dir(int(node_id.split("-")[1])) / "records" / key
                ).read_bytes() == newer

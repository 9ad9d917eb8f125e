"""Nodes keep, serve and pass on the newest valid map; clients fetch it and walk the chain."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import pytest

from nixshard.localnet import NodeProcess, free_port
from storage_network.errors import MapError
from storage_network.network_map import MAX_MAP_BYTES, fetch_newest_map

from .conftest import Cluster, put, served_epoch, wait_until
from .maps import maintainers, next_epoch, sign

Start = Callable[[Sequence[NodeProcess]], list[NodeProcess]]


def test_two_of_three_is_taken_and_passed_on(cluster: Cluster, started: Start) -> None:
    path = cluster.write("epoch1.json", cluster.epoch1)
    nodes = started([cluster.node(i, path) for i in range(3)])
    assert [served_epoch(n.url) for n in nodes] == [1, 1, 1]
    k = cluster.keys
    epoch2 = sign(next_epoch(cluster.epoch1, k=1), k[1], k[2])
    resp = put(nodes[0].url, epoch2)
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"epoch": 2, "outcome": "newer"}
    wait_until(lambda: all(served_epoch(n.url) == 2 for n in nodes), "every node serves epoch 2")
    assert all(served_epoch(n.url, 1) == 1 for n in nodes)  # old epochs are served too
    assert put(nodes[1].url, epoch2).json() == {"epoch": 2, "outcome": "held"}
    # restarted, a node keeps what it took (the --map it was given is older: ignored)
    nodes[2].restart()
    assert served_epoch(nodes[2].url) == 2


def test_one_of_three_is_refused_everywhere(cluster: Cluster, started: Start) -> None:
    path = cluster.write("epoch1.json", cluster.epoch1)
    nodes = started([cluster.node(i, path) for i in range(3)])
    weak = sign(next_epoch(cluster.epoch1, k=1), cluster.keys[2])
    for node in nodes:
        resp = put(node.url, weak)
        assert resp.status_code == 422
        assert ("epoch 2 has 1 valid signature of maintainers of epoch 1, needs 2"
                in resp.text)
    assert [served_epoch(n.url) for n in nodes] == [1, 1, 1]
    assert "epoch 2 has 1 valid signature" in nodes[0].log_text()


async def test_an_older_map_served_by_a_node_changes_nothing(
        cluster: Cluster, started: Start, caplog: pytest.LogCaptureFixture) -> None:
    path = cluster.write("epoch1.json", cluster.epoch1)
    nodes = started([cluster.node(i, path) for i in range(3)])
    # a node outside the map, started with epoch 1 and no gossip to speak of
    stale = NodeProcess(cluster.root / "stale", [], "stale-1", port=free_port(),
                        extra_args=["--map", str(path), "--gossip-seconds", "3600"])
    started([stale])
    k = cluster.keys
    epoch2 = sign(next_epoch(cluster.epoch1, k=1), k[0], k[1])
    assert put(nodes[0].url, epoch2).status_code == 201
    wait_until(lambda: all(served_epoch(n.url) == 2 for n in nodes), "every node serves epoch 2")
    assert served_epoch(stale.url) == 1
    caplog.set_level(logging.INFO, "nixshard.network_map")
    newest = await fetch_newest_map(epoch2, [stale.url])
    assert newest.epoch == 2
    assert f"{stale.url} serves epoch 1, older than the trusted epoch 2: ignored" in caplog.text
    from_bootstrap = await fetch_newest_map(cluster.bootstrap, [stale.url])
    assert from_bootstrap.epoch == 2 and from_bootstrap.digest() == epoch2.digest()
    from_old_map = await fetch_newest_map(cluster.epoch1, [stale.url])
    assert from_old_map.epoch == 2


async def test_rotated_maintainers_sign_the_next_epoch(cluster: Cluster, started: Start) -> None:
    path = cluster.write("epoch1.json", cluster.epoch1)
    nodes = started([cluster.node(i, path) for i in range(3)])
    old, new = cluster.keys, maintainers("new", 2)
    epoch2 = sign(next_epoch(cluster.epoch1, maintainers=tuple(n.public for n in new),
                             threshold=2), old[0], old[2])
    assert put(nodes[0].url, epoch2).status_code == 201
    by_old = sign(next_epoch(epoch2, k=1), *old)
    resp = put(nodes[1].url, by_old)
    assert resp.status_code == 422
    assert "epoch 3 has 0 valid signatures of maintainers of epoch 2, needs 2" in resp.text
    assert "'maint-1' is not a maintainer of epoch 2" in resp.text
    by_new = sign(next_epoch(epoch2, k=1), *new)
    wait_until(lambda: served_epoch(nodes[1].url) == 2, "node 2 has epoch 2")
    assert put(nodes[1].url, by_new).status_code == 201
    wait_until(lambda: all(served_epoch(n.url) == 3 for n in nodes), "every node serves epoch 3")
    newest = await fetch_newest_map(cluster.bootstrap, [nodes[2].url])
    assert newest.epoch == 3 and newest.network.k == 1
    assert newest.network.maintainers == frozenset({"new-1", "new-2"})


def test_gaps_stale_and_forks_are_refused(cluster: Cluster, started: Start) -> None:
    path = cluster.write("epoch1.json", cluster.epoch1)
    node, = started([cluster.node(0, path, gossip=3600)])
    k = cluster.keys
    epoch2 = sign(next_epoch(cluster.epoch1, k=1), k[0], k[1])
    epoch3 = sign(next_epoch(epoch2), k[0], k[1])
    resp = put(node.url, epoch3)
    assert resp.status_code == 409
    assert "holds epoch 1 and needs epoch 2 before epoch 3" in resp.text
    assert put(node.url, epoch2).status_code == 201
    other1 = sign(dataclasses.replace(cluster.epoch1.document, k=1), k[0], k[1])
    resp = put(node.url, other1)
    assert resp.status_code == 409 and "held with another document" in resp.text
    assert put(node.url, epoch3).status_code == 201
    assert served_epoch(node.url) == 3


BAD_BODIES = [
    (b"not json", 400, "not UTF-8 JSON"),
    (b'{"document": 1, "signatures": []}', 400, "map document must be a JSON object"),
    (b"[" * 50000 + b"]" * 50000, 400, "nested too deeply"),
    (b" " * (MAX_MAP_BYTES + 1), 413, "exceeds the limit"),
]


def test_malformed_and_oversized_maps_are_refused(cluster: Cluster, started: Start) -> None:
    path = cluster.write("epoch1.json", cluster.epoch1)
    node, = started([cluster.node(0, path, gossip=3600)])
    for body, status, reason in BAD_BODIES:
        resp = put(node.url, body)
        assert (resp.status_code, reason in resp.text) == (status, True), resp.text[:200]
    assert served_epoch(node.url) == 1


def test_a_map_whose_node_id_is_not_its_key_is_refused(cluster: Cluster,
                                                       started: Start) -> None:
    path = cluster.write("epoch1.json", cluster.epoch1)
    node, = started([cluster.node(0, path, gossip=3600)])
    epoch2 = sign(next_epoch(cluster.epoch1), cluster.keys[0], cluster.keys[1])
    text = epoch2.to_bytes().decode()
    first, second = (n.id for n in epoch2.document.nodes[:2])
    swapped = text.replace(first, "SWAP").replace(second, first).replace("SWAP", second)
    resp = put(node.url, swapped.encode())
    assert resp.status_code == 400
    assert "does not match its public key" in resp.text


def test_a_node_fills_in_older_epochs_and_one_from_a_bootstrap_catches_up(
        cluster: Cluster, started: Start) -> None:
    path1 = cluster.write("epoch1.json", cluster.epoch1)
    k = cluster.keys
    epoch2 = sign(next_epoch(cluster.epoch1, k=1), k[0], k[1])
    path2 = cluster.write("epoch2.json", epoch2)
    boot = cluster.root / "bootstrap.toml"
    boot.write_text(cluster.bootstrap.to_toml())
    first, second = started([cluster.node(0, path1), cluster.node(1, path2)])
    wait_until(lambda: served_epoch(second.url, 1) == 1, "node 2 filled in epoch 1")
    # from a peer, not from its --map (which is epoch 2 alone): node 2 says so, and
    # it may have done so before the first look (gossip starts with the node)
    assert "filled in the older epoch 1" in second.log_path.read_text()
    wait_until(lambda: served_epoch(first.url) == 2, "node 1 pulled epoch 2")
    third, = started([cluster.node(2, None, "--bootstrap", str(boot),
                                   "--accept-publisher", k[0].public.text())])
    wait_until(lambda: served_epoch(third.url) == 2, "the bootstrapped node reached epoch 2")
    assert served_epoch(third.url, 1) == 1


async def test_no_node_serves_a_valid_map(cluster: Cluster, started: Start) -> None:
    weak = sign(cluster.epoch1.document, cluster.keys[0])
    path = cluster.write("weak.json", weak)
    node, = started([cluster.node(0, path, gossip=3600)])  # trusted as given by its operator
    with pytest.raises(MapError, match="no node of"):
        await fetch_newest_map(cluster.bootstrap, [node.url])


def test_a_peer_down_at_first_gets_the_map_on_a_later_round(cluster: Cluster,
                                                            started: Start) -> None:
    path = cluster.write("epoch1.json", cluster.epoch1)
    first, second = started([cluster.node(0, path), cluster.node(1, path)])
    k = cluster.keys
    assert put(first.url, sign(next_epoch(cluster.epoch1, k=1), k[0], k[1])).status_code == 201
    wait_until(lambda: served_epoch(second.url) == 2, "node 2 has epoch 2")
    wait_until(lambda: "cannot read its map (retried next round)" in first.log_text(),
               "node 1 logged the unreachable peer")
    # the late node never asks by itself (one round an hour): only a push reaches it
    late, = started([cluster.node(2, path, gossip=3600)])
    wait_until(lambda: served_epoch(late.url) == 2, "the late node was given epoch 2")

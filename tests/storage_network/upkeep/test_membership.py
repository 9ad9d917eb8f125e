"""Adding and removing nodes in a network file."""

from __future__ import annotations

import pytest

from storage_network.config import Network, NodeInfo, init_network
from storage_network.errors import NetworkFileError
from storage_network.nodes.placement import ranking
from storage_network.upkeep.membership import with_node, without_node

URLS = [f"http://127.0.0.1:{9000 + i}" for i in range(1, 7)]


def network(urls: list[str] = URLS) -> Network:
    return init_network(urls, 4, 2)


def test_add_then_remove_round_trips() -> None:
    base = network()
    grown = with_node(base, NodeInfo("node-7", "http://127.0.0.1:9007/"))
    assert [n.id for n in grown.nodes][-1] == "node-7"
    assert grown.nodes[-1].url == "http://127.0.0.1:9007"
    assert without_node(grown, "node-7") == base


def test_add_moves_few_placements() -> None:
    """Rendezvous hashing: a 7th node takes about 1/7 of the first ranks, nothing else moves."""
    base = network()
    grown = with_node(base, NodeInfo("node-7", "http://127.0.0.1:9007"))
    moved = 0
    for i in range(700):
        key = i.to_bytes(4, "big")
        old = [n.id for n in ranking(base.nodes, key)]
        new = [n.id for n in ranking(grown.nodes, key) if n.id != "node-7"]
        assert old == new  # the others keep their relative order
        moved += ranking(grown.nodes, key)[0].id == "node-7"
    assert 50 < moved < 150


@pytest.mark.parametrize(("node", "message"), [
    (NodeInfo("node-1", "http://127.0.0.1:9100"), "already in the network"),
    (NodeInfo("node-9", URLS[0]), "already in the network"),
    (NodeInfo("bad id!", "http://127.0.0.1:9100"), "must match"),
    (NodeInfo("node-9", "ftp://x:1"), "has no known scheme"),
])
def test_add_refuses(node: NodeInfo, message: str) -> None:
    with pytest.raises(NetworkFileError, match=message):
        with_node(network(), node)


def test_remove_refuses_unknown_and_too_few() -> None:
    with pytest.raises(NetworkFileError, match="no node 'node-9'"):
        without_node(network(), "node-9")
    with pytest.raises(NetworkFileError, match="fewer than k \\+ m = 6"):
        without_node(network(), "node-1")

"""Placement groups (storage_network.nodes.placement_groups) and the dispatch of
storage_network.nodes.placement on the network file's ``placement``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import subprocess
import sys
from collections import Counter

import pytest

from storage_network.coding.codec import StripeCodec
from storage_network.config import Network, NodeInfo
from storage_network.nodes.placement import (
    chunk_homes,
    chunk_ranking,
    group_placement,
    ranking,
    record_nodes,
    shard_nodes,
)
from storage_network.nodes.placement_groups import GROUPS, GroupPlacement, group_of
from storage_network.write.shard_upload import StripeUpload
from tests.nix_tools import REPO

SMALL = 512  # groups of the statistical tests: enough samples, quick to compute


def nodes_of(count: int, **fields: object) -> tuple[NodeInfo, ...]:
    return tuple(NodeInfo(f"node-{i}", f"http://127.0.0.1:{9000 + i}", **fields)  # type: ignore[arg-type]
                 for i in range(1, count + 1))


def ten_of_four_operators() -> tuple[NodeInfo, ...]:
    """10 nodes of 4 operators; operator a runs 4 of them."""
    ops = ["a"] * 4 + ["b"] * 2 + ["c"] * 2 + ["d"] * 2
    return tuple(dataclasses.replace(node, operator=op)
                 for node, op in zip(nodes_of(10), ops, strict=True))


def groups_net(nodes: tuple[NodeInfo, ...], k: int = 4, m: int = 2) -> Network:
    return Network(nodes=nodes, k=k, m=m, placement="groups")


def chunk_ids(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(32) for _ in range(count)]


def homes_of(placement: GroupPlacement, n: int) -> list[list[str]]:
    return [[node.id for node in placement.group(g)[:n]] for g in range(placement.groups)]


# --- the same everywhere ---------------------------------------------------------------

MIXED = (*nodes_of(3, operator="op-a", zone="z1"), *(
    NodeInfo(f"b-{i}", f"http://127.0.0.1:{9100 + i}", operator="op-b", zone=f"z{i % 2}",
             weight=1.0 + i / 4) for i in range(7)),
    NodeInfo("drain-1", "http://127.0.0.1:9200", state="draining"),
    NodeInfo("gone-1", "http://127.0.0.1:9201", state="removed"),
    *(NodeInfo(f"solo-{i}", f"http://127.0.0.1:{9300 + i}") for i in range(20)))

PROGRAM = """
import json, random, sys
from storage_network.config import Network, NodeInfo
from storage_network.nodes.placement import chunk_ranking
nodes = tuple(NodeInfo(**entry) for entry in json.loads(sys.argv[1]))
net = Network(nodes=nodes, k=4, m=2, placement="groups")
rng = random.Random(7)
print(json.dumps([[n.id for n in chunk_ranking(net, rng.randbytes(32))] for _ in range(40)]))
"""


def test_rankings_are_the_same_in_a_fresh_process_and_any_file_order() -> None:
    rng = random.Random(7)
    net = groups_net(MIXED)
    here = [[n.id for n in chunk_ranking(net, rng.randbytes(32))] for _ in range(40)]
    shuffled = list(MIXED)
    random.Random(3).shuffle(shuffled)
    out = subprocess.run([sys.executable, "-c", PROGRAM,
                          json.dumps([dataclasses.asdict(n) for n in shuffled])],
                         cwd=REPO, capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout) == here
    assert len({tuple(r[:6]) for r in here}) > 20  # not one ranking for every chunk


def test_a_chunk_maps_to_its_group_by_a_hash_of_its_id() -> None:
    chunk = bytes(range(32))
    digest = hashlib.sha256(b"nixshard-group\x00" + chunk).digest()
    assert group_of(chunk) == int.from_bytes(digest[:8], "big") % GROUPS
    net = groups_net(nodes_of(12))
    placement = group_placement(net)
    assert group_placement(net) is placement  # cached per node set
    assert chunk_ranking(net, chunk) is placement.group(group_of(chunk))  # shared, not copied


def test_a_ranking_is_every_node_but_removed_once_draining_last() -> None:
    placement = GroupPlacement(MIXED, 12, groups=64)
    active = sorted(n.id for n in MIXED if n.state == "active")
    for g in range(64):
        rank = placement.group(g)
        listed = [n.id for n in rank]
        assert listed == [rank[i].id for i in range(len(rank))]
        assert listed == [n.id for n in rank[:]] == [n.id for n in rank[0:len(rank):1]]
        assert [n.id for n in rank[1::3]] == listed[1::3]
        assert [n.id for n in rank[10:20]] == listed[10:20]
        assert rank[-1].id == "drain-1" and listed[-1] == "drain-1"
        assert sorted(listed[:-1]) == active and "gone-1" not in listed
        assert len(rank) == len(active) + 1
        with pytest.raises(IndexError):
            rank[len(rank)]


def test_removed_nodes_are_in_no_ranking_and_draining_ones_are_never_homes() -> None:
    nodes = (*nodes_of(8), NodeInfo("d", "http://127.0.0.1:9400", state="draining"),
             NodeInfo("r", "http://127.0.0.1:9401", state="removed"))
    placement = GroupPlacement(nodes, 12, groups=SMALL)
    for g in range(SMALL):
        ids = [n.id for n in placement.group(g)]
        assert "r" not in ids and ids[-1] == "d"
        assert "d" not in ids[:6]


def test_with_fewer_active_nodes_than_n_draining_ones_fill_the_stripe() -> None:
    nodes = (*nodes_of(5), NodeInfo("d", "http://127.0.0.1:9400", state="draining"))
    net = groups_net(nodes)
    for chunk in chunk_ids(20):
        homes = [n.id for n in chunk_homes(net, chunk, 6)]
        assert len(set(homes)) == 6 and homes[5] == "d"


def test_a_pusher_puts_no_new_shard_on_a_draining_node() -> None:
    nodes = (*nodes_of(8), NodeInfo("d", "http://127.0.0.1:9400", state="draining"))
    net = groups_net(nodes)
    enc = StripeCodec(4, 2).encode(b"a chunk" * 100)
    rank = chunk_ranking(net, enc.ref.chunk_id)
    stripe = StripeUpload(enc, rank, used={n.id for n in rank[:6]})
    spares = [stripe.spare(set()), stripe.spare(set())]
    assert [s.id for s in spares if s] == [n.id for n in rank[6:8]]
    assert stripe.spare(set()) is None  # only the draining node is left


# --- spread, weights, movement ---------------------------------------------------------


def test_homes_spread_over_operators_as_evenly_as_the_nodes_allow() -> None:
    nodes = ten_of_four_operators()
    operator = {n.id: n.operator for n in nodes}
    placement = group_placement(groups_net(nodes))
    for homes in homes_of(placement, 6):
        assert max(Counter(operator[h] for h in homes).values()) <= 2
    # 3 operators, 8 nodes, 6 homes: 2 each even though one operator runs 4
    three = tuple(n for n in nodes if n.operator != "d")
    for homes in homes_of(GroupPlacement(three, 12, groups=SMALL), 6):
        assert sorted(Counter(operator[h] for h in homes).values()) == [2, 2, 2]


def test_homes_spread_over_zones_inside_an_operator() -> None:
    nodes = tuple(NodeInfo(f"{op}-{zone}-{i}", "http://127.0.0.1:9000", operator=op,
                           zone=zone) for op in "ab" for zone in ("z1", "z2") for i in range(3))
    zone = {n.id: (n.operator, n.zone) for n in nodes}
    for homes in homes_of(GroupPlacement(nodes, 8, groups=SMALL), 4):
        assert sorted(Counter(zone[h] for h in homes).values()) == [1, 1, 1, 1]


def test_a_node_of_weight_two_gets_about_twice_the_homes() -> None:
    nodes = tuple(dataclasses.replace(n, weight=2.0) if n.id == "node-1" else n
                  for n in nodes_of(100))
    counts = Counter(h for homes in homes_of(GroupPlacement(nodes, 12, groups=4096), 6)
                     for h in homes)
    others = sum(counts[f"node-{i}"] for i in range(2, 101)) / 99
    assert 1.6 < counts["node-1"] / others < 2.4, (counts["node-1"], others)


@pytest.mark.parametrize("change", ["join", "leave", "join-operator"])
def test_one_node_joining_or_leaving_moves_few_homes(change: str) -> None:
    """A fair placement must give a joining node n / (nodes + 1) of the stripes (5.9 %
    at 100 nodes, n = 6): home sets change in about that many groups, and most
    homes of those stay where they were."""
    before = tuple(dataclasses.replace(n, operator=f"op-{i % 25}")
                   for i, n in enumerate(nodes_of(100)))
    if change == "join":
        after = (*before, NodeInfo("new", "http://127.0.0.1:9999", operator="op-3"))
    elif change == "leave":
        after = before[1:]
    else:
        after = (*before, NodeInfo("new", "http://127.0.0.1:9999", operator="op-new"))
    old = homes_of(GroupPlacement(before, 12, groups=2048), 6)
    new = homes_of(GroupPlacement(after, 12, groups=2048), 6)
    sets = sum(set(a) != set(b) for a, b in zip(old, new, strict=True)) / len(old)
    moved = sum(x != y for a, b in zip(old, new, strict=True)
                for x, y in zip(a, b, strict=True)) / (6 * len(old))
    assert sets < 1.5 * 6 / 100, sets
    assert moved < 0.05, moved


# --- the legacy scheme -----------------------------------------------------------------


def literal_ranking(ids: list[str], key: bytes) -> list[str]:
    """Rendezvous as first shipped: sort by SHA-256(id || 0x00 || key), highest first."""
    scored = [(hashlib.sha256(i.encode() + b"\x00" + key).hexdigest(), i) for i in ids]
    return [i for _, i in sorted(scored, reverse=True)]


def test_the_rendezvous_scheme_is_unchanged() -> None:
    nodes = (*ten_of_four_operators(),
             NodeInfo("d", "http://127.0.0.1:9400", state="draining", weight=3.0))
    net = Network(nodes=nodes, k=4, m=2)
    assert net.placement == "rendezvous"
    ids = [n.id for n in nodes]
    active = ids[:-1]
    plain = Network(nodes=nodes[:-1], k=4, m=2)
    for key in (b"", b"\x00" * 32, bytes(range(32)), b"chunk-7"):
        expected = literal_ranking(ids, key)
        assert [n.id for n in ranking(nodes, key)] == expected
        assert [n.id for n in shard_nodes(nodes, key, 6)] == expected[:6]
        # a file whose nodes are all active: byte-identical to the first shipped scheme
        assert [n.id for n in chunk_ranking(plain, key)] == literal_ranking(active, key)
        # a draining node goes last: read, never a home
        assert [n.id for n in chunk_ranking(net, key)] == literal_ranking(active, key) + ["d"]
        assert [n.id for n in chunk_homes(net, key, 6)] == literal_ranking(active, key)[:6]
    assert [n.id for n in record_nodes(nodes, "abc")] == literal_ranking(ids, b"record:abc")
    gone = (*nodes[:-1], dataclasses.replace(nodes[-1], state="removed"))
    assert [n.id for n in record_nodes(gone, "abc")] == literal_ranking(active, b"record:abc")
    assert "d" not in [n.id for n in chunk_ranking(Network(nodes=gone, k=4, m=2), b"x")]


@pytest.mark.parametrize("weight", [0.0, -1.0, float("inf"), float("nan")])
def test_a_weight_that_is_not_positive_and_finite_is_refused(weight: float) -> None:
    nodes = (*nodes_of(5), NodeInfo("odd", "http://127.0.0.1:9400", weight=weight))
    with pytest.raises(ValueError, match=r"\['odd'\] need a positive finite weight"):
        GroupPlacement(nodes, 8, groups=4)

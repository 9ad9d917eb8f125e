"""The worst losses a placement survives (storage_network.nodes.placement_tolerance),
as `nixshard durability` and `nixshard status` show them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from click.testing import CliRunner

from nixshard.cli import main
from storage_network.config import Network, NodeInfo, write_network
from storage_network.nodes.placement_tolerance import (
    LossTolerance,
    loss_tolerance,
    operators_survived,
)

from .test_placement_groups import nodes_of, ten_of_four_operators


def test_operators_survived_sums_the_largest_counts() -> None:
    assert operators_survived([2, 1, 2, 1], 2) == 1
    assert operators_survived([1, 1, 1, 1, 1, 1], 2) == 2
    assert operators_survived([3, 1, 1, 1], 2) == 0
    assert operators_survived([], 2) == 0


def test_the_ten_node_map_survives_one_operator_or_two_nodes() -> None:
    groups = Network(nodes=ten_of_four_operators(), k=4, m=2, placement="groups")
    assert loss_tolerance(groups) == LossTolerance(operators=1, nodes=2)
    assert loss_tolerance(groups).sentence() == \
        "survives the loss of any 1 operator, or any 2 nodes"
    # rendezvous may put 4 shards of a stripe on operator a's 4 nodes
    legacy = dataclasses.replace(groups, placement="rendezvous")
    assert loss_tolerance(legacy) == LossTolerance(operators=0, nodes=2)
    assert loss_tolerance(legacy).sentence() == \
        "survives the loss of any 2 nodes (not of any whole operator)"


def test_nodes_without_operators_are_their_own() -> None:
    for placement in ("rendezvous", "groups"):
        net = Network(nodes=nodes_of(8), k=4, m=3, placement=placement)
        assert loss_tolerance(net) == LossTolerance(operators=3, nodes=3)


def test_too_few_active_nodes_lower_the_node_figure() -> None:
    nodes = (*nodes_of(5), NodeInfo("gone", "http://127.0.0.1:9400", state="removed"))
    net = Network(nodes=nodes, k=4, m=2, placement="groups")
    assert loss_tolerance(net) == LossTolerance(operators=1, nodes=1)
    assert loss_tolerance(net).sentence() == "survives the loss of any 1 operator, or any 1 node"


def network_file(tmp_path: Path) -> Path:
    path = tmp_path / "network.toml"
    write_network(Network(nodes=ten_of_four_operators(), k=4, m=2, placement="groups"), path)
    return path


def test_durability_and_status_show_what_the_placement_survives(tmp_path: Path) -> None:
    path = str(network_file(tmp_path))
    runner = CliRunner()
    res = runner.invoke(main, ["durability", "--network", path, "-p", "0.01"])
    assert res.exit_code == 0, res.output
    assert "placement: survives the loss of any 1 operator, or any 2 nodes" in res.output
    res = runner.invoke(main, ["durability", "--network", path, "--json"])
    assert json.loads(res.output)["survives"] == {"operators": 1, "nodes": 2}
    res = runner.invoke(main, ["durability", "-k", "4", "-m", "2", "--json"])
    assert "survives" not in json.loads(res.output)  # no network, no placement

    scores = str(tmp_path / "none.json")
    res = runner.invoke(main, ["status", "--network", path, "--scores", scores,
                               "--timeout", "0.2"])
    assert res.exit_code == 1  # nothing listens on those ports
    assert res.output.splitlines()[0] == (
        "4-of-6, 10 nodes, groups placement: survives the loss of any 1 operator, "
        "or any 2 nodes")
    res = runner.invoke(main, ["status", "--network", path, "--scores", scores,
                               "--timeout", "0.2", "--json"])
    assert json.loads(res.output)["survives"] == {"operators": 1, "nodes": 2}

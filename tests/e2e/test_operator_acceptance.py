"""Issue 15's first acceptance case on the real nix binary: 10 nodes of 4 operators (one
runs 4, the others 2 each), 4-of-6 with placement groups; every node of the big operator
is SIGKILLed, and `nix copy --from` the gateway still copies the whole closure."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork
from storage_network.config import write_network

from .conftest import (
    GATEWAY_WORKERS,
    Closure,
    NixKey,
    copy_from,
    nar_hashes,
    nixshard,
    push,
    verify,
)

pytestmark = pytest.mark.nix

OPERATORS = ["big"] * 4 + ["op-b"] * 2 + ["op-c"] * 2 + ["op-d"] * 2


def test_losing_every_node_of_the_biggest_operator_loses_nothing(
        nix_key: NixKey, closure: Closure, tmp_path: Path) -> None:
    with LocalNetwork(tmp_path / "net", nix_key.publisher, workers=GATEWAY_WORKERS) as net:
        net.start_nodes(10, 4, 2)
        assert net.network is not None
        nodes = tuple(dataclasses.replace(node, operator=op)
                      for node, op in zip(net.network.nodes, OPERATORS, strict=True))
        net.network = dataclasses.replace(net.network, nodes=nodes, placement="groups")
        write_network(net.network, net.network_file)
        res = nixshard("durability", "--network", str(net.network_file))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "survives the loss of any 1 operator, or any 2 nodes" in res.stdout
        net.start_daemon()
        push(net, nix_key, closure.roots)
        for number, op in enumerate(OPERATORS, 1):
            if op == "big":
                net.nodes[number - 1].kill()
        dest = tmp_path / "copy"
        copy_from(net, nix_key, dest, closure.roots)
        verify(nix_key, dest, closure.roots)
        originals = {p: str(e["narHash"]) for p, e in closure.infos.items()}
        assert nar_hashes(dest, closure.roots) == originals

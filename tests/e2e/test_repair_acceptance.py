"""Issue 3's acceptance on the real nix binary: lose m nodes, repair, lose m others, copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork

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


def repair(net: LocalNetwork, key: NixKey, *extra: str) -> dict[str, object]:
    res = nixshard("repair", "--network", str(net.network_file), "--signing-key",
                   str(key.secret_file), "--json", "--no-progress", *extra)
    assert res.returncode == 0, res.stdout + res.stderr
    report: dict[str, object] = json.loads(res.stdout)
    return report


def test_repair_then_lose_m_other_nodes(nix_key: NixKey, closure: Closure,
                                        tmp_path: Path) -> None:
    with LocalNetwork(tmp_path / "net", nix_key.publisher, workers=GATEWAY_WORKERS) as net:
        net.start_nodes(8, 4, 2)
        net.start_daemon()
        push(net, nix_key, closure.roots)
        for number in (1, 2):  # m nodes die and their disks with them
            net.nodes[number - 1].kill()
            shutil.rmtree(net.node_dir(number))
        report = repair(net, nix_key)
        assert report["lost"] == [] and report["unplaceable"] == 0
        assert int(report["shards_written"]) > 0  # type: ignore[call-overload]
        check = repair(net, nix_key, "--dry-run")
        assert check["healthy"] == check["stripes"] and check["degraded"] == 0
        for number in (3, 4):  # m other nodes
            net.nodes[number - 1].kill()
        dest = tmp_path / "copy"
        copy_from(net, nix_key, dest, closure.roots)
        verify(nix_key, dest, closure.roots)
        originals = {p: str(e["narHash"]) for p, e in closure.infos.items()}
        assert nar_hashes(dest, closure.roots) == originals

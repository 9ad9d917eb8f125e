"""The acceptance flow of issue 2 on the real nix binary and real processes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from nixshard.localnet import LocalNetwork
from storage_network.nodes.placement import record_nodes
from tests.support.shards import rot_shards

from .conftest import Closure, NixKey, copy_from, nar_hashes, nix, push, summary_field, verify

pytestmark = pytest.mark.nix


def test_push_survives_m_node_loss_and_refuses_beyond(
        local_net: LocalNetwork, nix_key: NixKey, closure: Closure, tmp_path: Path) -> None:
    first = push(local_net, nix_key, closure.roots)
    assert summary_field(first, "paths pushed") == str(len(closure.infos))
    again = push(local_net, nix_key, closure.roots)
    assert summary_field(again, "paths pushed") == "0"
    assert summary_field(again, "paths skipped").startswith(str(len(closure.infos)))
    assert summary_field(again, "stored on nodes").startswith("0 B of new shards")

    for node in local_net.nodes[:2]:
        node.kill()
    dest = tmp_path / "copy-1"
    copy_from(local_net, nix_key, dest, closure.roots)
    verify(nix_key, dest, closure.roots)
    originals = {p: str(e["narHash"]) for p, e in closure.infos.items()}
    assert nar_hashes(dest, closure.roots) == originals

    # Kill a third node, keeping one replica of the big path's record alive,
    # so the narinfo is still found but every chunk has only 3 of 4 needed shards.
    assert local_net.network is not None
    big_hash = Path(closure.big).name[:32]
    replicas = [n.id for n in record_nodes(local_net.network.nodes, big_hash)[:3]]
    alive = [n for n in local_net.nodes if n.running]
    alive_replicas = [n for n in alive if n.name in replicas]
    victim = next(n for n in alive if n.name not in replicas or len(alive_replicas) > 1)
    victim.kill()
    url = local_net.daemon.url  # type: ignore[union-attr]
    narinfo = httpx.get(f"{url}/{big_hash}.narinfo")
    assert narinfo.status_code == 200
    nar_url = next(line.split(": ", 1)[1] for line in narinfo.text.splitlines()
                   if line.startswith("URL: "))
    # the daemon that served the copy keeps the NAR in its local disk cache ...
    cached = httpx.get(f"{url}/{nar_url}", timeout=60)
    assert cached.status_code == 200 and len(cached.content) == int(
        cached.headers["Content-Length"])
    # ... while a gateway without it cannot rebuild the NAR and says so before any byte
    fresh = local_net.start_gateway("fresh", extra=("--cache-max-bytes", "0"))
    with httpx.stream("GET", f"{fresh.url}/{nar_url}") as resp:
        body = resp.read()
    assert resp.status_code == 503
    assert body.startswith(b"error: chunk ") and b"reachable" in body
    failed = nix("nix", "copy", "--from", fresh.url, "--to", str(tmp_path / "copy-2"),
                 "--option", "trusted-public-keys", nix_key.public, closure.big, check=False)
    assert failed.returncode != 0
    assert "503" in failed.stderr


def test_corrupt_node_is_caught_and_copy_succeeds(
        local_net: LocalNetwork, nix_key: NixKey, closure: Closure, tmp_path: Path) -> None:
    push(local_net, nix_key, [closure.big])
    bad = local_net.nodes[0]
    rot_shards(bad.data_dir)  # every shard file of the node
    dest = tmp_path / "copy"
    copy_from(local_net, nix_key, dest, [closure.big])
    verify(nix_key, dest, [closure.big])
    assert nar_hashes(dest, [closure.big])[closure.big] == closure.infos[closure.big]["narHash"]
    log = (local_net.root / "serve.log").read_text()
    assert f"node {bad.name} served bad data for shard" in log

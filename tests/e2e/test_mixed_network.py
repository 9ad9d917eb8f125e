"""A mixed network on the real nix binary: 3 nixshard nodes and 3 SeaweedFS buckets, 4-of-6.

One flow (``mixed_net``: node-1..3 are node processes, node-4..6 buckets of the
session's SeaweedFS, each behind its own endpoint; every nixshard command runs
through ``LocalNetwork.run_nixshard``, which passes the AWS variables):

1. ``nixshard push`` of a small path that gc will collect, then (a few seconds
   later) of the e2e closure; ``nix copy --from`` the gateway into a fresh
   store, ``nix store verify -r``, NarHashes equal.
2. ``nixshard audit``: every node and bucket healthy.
3. Bucket node-4 is emptied (it lost its disk); ``nixshard repair`` brings every
   chunk back to n, ``repair --dry-run`` then finds every stripe healthy.
4. ``nixshard gc --max-age`` (the small path's age) ``--grace 0s``: the small
   path's record expires (its narinfo is then 404) and its shards go from
   every node and bucket; every path of the closure stays.
5. Node-1 killed and bucket node-5 offline (its endpoint killed): the closure
   is copied again, verified, NarHashes equal; ``nixshard audit`` flags both.

Run time on the 2-core development machine (shared with other work): about 20 s,
25 s with the session fixtures (SeaweedFS, the closure):
``python3 -m pytest -q tests/e2e/test_mixed_network.py``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from nixshard.localnet import LocalNetwork

from .conftest import Closure, NixKey, copy_from, nar_hashes, nix, summary_field, verify

pytestmark = pytest.mark.nix
AGE_GAP = 7.0
"""Seconds between the small path's push and the closure's: more than gc's start-up
(its ``t0`` is taken after the process starts, a few seconds on a loaded 2-core CI
machine) plus a second of ``created`` rounding."""


def run_json(net: LocalNetwork, *args: str) -> tuple[int, dict[str, Any]]:
    """``nixshard ARGS --json``: exit status and the JSON report."""
    res = net.run_nixshard(*args, "--json")
    assert res.stdout.strip(), f"{args[0]} exited {res.returncode}:\n{res.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(res.stdout)
    return res.returncode, report


def push(net: LocalNetwork, key: NixKey, paths: list[str]) -> str:
    """``nixshard push``; its summary, asserting success."""
    res = net.run_nixshard("push", "--network", str(net.network_file), "--signing-key",
                           str(key.secret_file), "--no-progress", *paths)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def small_path(tmp_path: Path) -> str:
    """A store path of its own (random bytes: no chunk shared with anything)."""
    tree = tmp_path / "nixshard-e2e-gc-victim"
    tree.mkdir()
    (tree / "data").write_bytes(os.urandom(200_000))
    return nix("nix-store", "--add", str(tree)).stdout.strip()


def copy_and_check(net: LocalNetwork, key: NixKey, closure: Closure, dest: Path) -> None:
    copy_from(net, key, dest, closure.roots)
    verify(key, dest, closure.roots)
    originals = {p: str(e["narHash"]) for p, e in closure.infos.items()}
    assert nar_hashes(dest, closure.roots) == originals


def test_mixed_network_push_audit_repair_gc_then_lose_a_node_and_a_bucket(
        mixed_net: LocalNetwork, nix_key: NixKey, closure: Closure, tmp_path: Path) -> None:
    net = mixed_net
    assert [b.node_id for b in net.buckets] == ["node-4", "node-5", "node-6"]
    network_args = ["--network", str(net.network_file)]
    key_args = [*network_args, "--signing-key", str(nix_key.secret_file)]

    victim = small_path(tmp_path)
    push(net, nix_key, [victim])
    cut = time.time() + 0.5  # the victim's signed `created` is before this
    time.sleep(AGE_GAP)
    summary = push(net, nix_key, closure.roots)
    assert summary_field(summary, "paths pushed") == str(len(closure.infos)), summary
    copy_and_check(net, nix_key, closure, tmp_path / "copy-1")

    code, audit = run_json(net, "audit", *network_args, "--scores", str(tmp_path / "scores"))
    assert code == 0 and audit["flagged"] == [], audit
    assert [r["node"] for r in audit["nodes"]] == [f"node-{i}" for i in range(1, 7)]
    assert all(r["verdict"] == "ok" and r["held"] == r["sampled"] > 0 for r in audit["nodes"])

    assert net.empty_bucket("node-4") > 0
    code, repair = run_json(net, "repair", *key_args, "--no-progress")
    assert code == 0 and repair["lost"] == [] and repair["unplaceable"] == 0, repair
    assert repair["shards_written"] > 0, repair
    code, check = run_json(net, "repair", *key_args, "--no-progress", "--dry-run")
    assert code == 0 and check["healthy"] == check["stripes"] and check["degraded"] == 0, check

    max_age = time.time() - cut
    code, gc = run_json(net, "gc", *key_args, "--max-age", f"{max_age:.2f}s", "--grace", "0s")
    victim_key = Path(victim).name[:32]
    assert code == 0 and gc["skipped"] == [], gc
    assert [e["key"] for e in gc["expired_records"]] == [victim_key], gc
    assert sorted(gc["nodes"]) == [f"node-{i}" for i in range(1, 7)], gc
    assert all(n["deleted_shards"] > 0 and not n["errors"] for n in gc["nodes"].values()), gc
    assert 0 < gc["live_stripes"] < check["stripes"], gc
    assert httpx.get(f"{net.daemon.url}/{victim_key}.narinfo").status_code == 404  # type: ignore[union-attr]

    net.node("node-1").kill()
    net.bucket("node-5").kill()
    copy_and_check(net, nix_key, closure, tmp_path / "copy-2")
    code, audit = run_json(net, "audit", *network_args, "--scores", str(tmp_path / "scores"))
    assert code == 1 and sorted(audit["flagged"]) == ["node-1", "node-5"], audit

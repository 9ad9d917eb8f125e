"""A private cache on the real nix binary: only ciphertext on the nodes and buckets.

One flow on a private mixed network (``private = true``; 4-of-6: node processes
node-1..3 and buckets node-4..6 of the session's SeaweedFS):

1. A closure whose one path holds a 1 KiB random marker is pushed with the
   cache secret; ``nix copy --from`` the gateway (credentials from a netrc
   file; a private gateway requires them) into a fresh store, ``nix store
   verify -r``, NarHashes equal.  Without credentials the gateway answers 401.
2. Every file under every node's data directory and every object of every
   bucket (names and bytes) is scanned: none holds the marker, a store-path
   hash or path of the closure, or a NarHash (nix32, hex, base64 or raw) or
   Sig of its narinfos.  The gateway's own disk cache does hold the marker:
   the scan finds what is there, as it finds the keyed record keys on the nodes.
3. Pushing the closure again stores nothing: no file and no object more.
4. A gateway without the secret does not start, and its log says why.
5. With no secret anywhere in their environment: ``nixshard audit`` finds
   every node healthy; node-2 is wiped and bucket node-5 emptied,
   ``nixshard repair`` rebuilds what they held; ``nixshard gc`` expires a
   path older than the closure and removes its shards.  The closure is then
   copied again through the gateway with node-1 killed, and verifies.
6. ``nix copy --to`` the private gateway uploads a new path, which is then
   copied back into another fresh store and verifies.

Run time on the 2-core development machine: about 40 s with the session
fixtures: ``python3 -m pytest -q tests/e2e/test_private_cache.py``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nix_formats import nix32
from nix_formats.hash import parse_nix_hash
from nix_formats.store_path import StorePath
from nixshard.demo import build_closure
from nixshard.localnet import LocalNetwork, env_with_nix_config, free_port
from nixshard.seaweed import SeaweedServer

from .conftest import GATEWAY_WORKERS, NixKey, nar_hashes, nix

pytestmark = pytest.mark.nix
USER, PASSWORD = "laptop", "private-pass"
AGE_GAP = 7.0
"""Seconds between the gc victim's push and the closure's (as in test_mixed_network)."""
WINDOW = 24
"""Bytes of each piece of the marker looked for (a piece straddling two shards is still found)."""


@pytest.fixture
def private_net(tmp_path: Path, nix_key: NixKey, seaweed_server: SeaweedServer
                ) -> Iterator[LocalNetwork]:
    """A private mixed network, 4-of-6 (3 node processes, 3 buckets), and its gateway
    with upload credentials, the signing key and (from LocalNetwork) the cache secret."""
    with LocalNetwork(tmp_path / "net", nix_key.publisher, workers=GATEWAY_WORKERS) as net:
        net.start_nodes(3, 4, 2, buckets=3, seaweed=seaweed_server, private=True)
        creds = tmp_path / "credentials"
        creds.write_text(f"{USER}:{PASSWORD}\n")
        net.start_daemon(extra=["--upload-credentials", str(creds),
                                "--signing-key", str(nix_key.secret_file)])
        yield net


def marker_closure(tmp_path: Path, marker: bytes) -> list[str]:
    """Roots of a closure: a path holding ``marker`` (and 300 kB of filler), a built path
    referring to it, and the demo closure."""
    tree = tmp_path / "nixshard-private-marker"
    tree.mkdir()
    (tree / "marker.bin").write_bytes(marker)
    (tree / "filler").write_bytes(os.urandom(300_000))
    (tree / "notes").write_text("a private build output\n")
    dep = nix("nix-store", "--add", str(tree)).stdout.strip()
    stamp = str(time.time_ns())
    expr = (f'let dep = builtins.storePath "{dep}"; in derivation {{ '
            'name = "nixshard-private-top"; system = builtins.currentSystem; '
            'builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" '
            f'"mkdir -p $out; echo ${{dep}} > $out/dep; cp ${{dep}}/notes $out/notes; '
            f'echo {stamp} > $out/stamp" ]; }}')
    out = subprocess.run(["nix-build", "--no-out-link", "-E", expr], capture_output=True,
                         text=True, env=env_with_nix_config(), check=True)
    return [out.stdout.strip().splitlines()[-1], *build_closure(f"private-{stamp}")]


NARINFO_FIELDS = ("StorePath", "URL", "NarHash", "References", "Deriver", "Sig")
"""The narinfo fields whose values are looked for (NarSize, FileSize and Compression
are short numbers or words that random bytes can hold by chance)."""


def narinfo_values(url: str, hash_part: str) -> dict[str, bytes]:
    """The values of :data:`NARINFO_FIELDS` in the narinfo the gateway serves (each
    reference alone)."""
    text = httpx.get(f"{url}/{hash_part}.narinfo", auth=(USER, PASSWORD)).raise_for_status().text
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key in NARINFO_FIELDS:
            for word in value.split() if key == "References" else [value]:
                values[f"{key} {word[:40]}"] = word.encode()
    assert any(name.startswith("StorePath ") for name in values), text
    return values


def secrets_of(infos: list[dict[str, Any]], marker: bytes, url: str) -> dict[str, bytes]:
    """What no node may hold, by name: marker pieces, store-path hashes and paths,
    NarHashes in four encodings, and every narinfo field value but numbers."""
    found: dict[str, bytes] = {f"marker[{i}:]": marker[i:i + WINDOW]
                               for i in range(0, len(marker) - WINDOW + 1, WINDOW)}
    for info in infos:
        path = StorePath.parse(str(info["path"]))
        _, digest = parse_nix_hash(str(info["narHash"]))
        found[f"hash part {path.hash_part}"] = path.hash_part.encode()
        found[f"hash bytes {path.hash_part}"] = nix32.decode(path.hash_part)
        found[f"path {path.path}"] = path.path.encode()
        found[f"name {path.name}"] = f"-{path.name}".encode()
        found[f"NarHash nix32 {path.hash_part}"] = nix32.encode(digest).encode()
        found[f"NarHash hex {path.hash_part}"] = digest.hex().encode()
        found[f"NarHash base64 {path.hash_part}"] = base64.b64encode(digest)
        found[f"NarHash raw {path.hash_part}"] = digest
        found.update(narinfo_values(url, path.hash_part))
    assert any(name.startswith("Sig ") for name in found)
    return found


def stored_blobs(net: LocalNetwork) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of everything the network holds: every file under every node's
    data directory (its relative path, then its bytes) and every bucket object (its
    key, then its body)."""
    for number in range(1, len(net.nodes) + 1):
        root = net.node_dir(number)
        for path in sorted(root.rglob("*")):
            name = f"node-{number}/{path.relative_to(root)}"
            yield name + " (name)", str(path.relative_to(root)).encode()
            if path.is_file():
                yield name, path.read_bytes()
    assert net.seaweed is not None
    client = net.seaweed.client()
    for bucket in net.buckets:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.bucket):
            for obj in page.get("Contents", []):
                name = f"{bucket.node_id}/{obj['Key']}"
                yield name + " (name)", obj["Key"].encode()
                yield name, client.get_object(Bucket=bucket.bucket, Key=obj["Key"])["Body"].read()


def leaks(blobs: Iterator[tuple[str, bytes]], secrets: dict[str, bytes]) -> list[str]:
    """``"<what> in <where>"`` for every secret found in any blob."""
    return [f"{what} in {where}" for where, data in blobs
            for what, needle in secrets.items() if needle in data]


def held(net: LocalNetwork) -> int:
    """Files and objects the network holds."""
    return sum(1 for name, _ in stored_blobs(net) if not name.endswith("(name)"))


def push(net: LocalNetwork, key: NixKey, paths: list[str], *, secret: bool = True) -> str:
    """``nixshard push`` (with the cache secret in its environment); its summary."""
    res = net.run_nixshard("push", "--network", str(net.network_file), "--signing-key",
                           str(key.secret_file), "--no-progress", *paths,
                           env=net.secret_env if secret else None)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def run_json(net: LocalNetwork, *args: str) -> tuple[int, dict[str, Any]]:
    """A maintenance command with ``--json``, with no cache secret in its environment."""
    assert "NIXSHARD_CACHE_SECRET" not in os.environ and "NIXSHARD_CACHE_SECRET" not in net.env
    res = net.run_nixshard(*args, "--json")
    assert res.stdout.strip(), f"{args[0]} exited {res.returncode}:\n{res.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(res.stdout)
    return res.returncode, report


def copy_and_verify(net: LocalNetwork, key: NixKey, netrc: Path, dest: Path,
                    roots: list[str], infos: list[dict[str, Any]]) -> None:
    assert net.daemon is not None
    nix("nix", "copy", "--from", net.daemon.url, "--to", str(dest), "--option",
        "trusted-public-keys", key.public, "--option", "netrc-file", str(netrc), *roots)
    nix("nix", "store", "verify", "--store", str(dest), "-r", "--option",
        "trusted-public-keys", key.public, *roots)
    assert nar_hashes(dest, roots) == {str(i["path"]): str(i["narHash"]) for i in infos}


def test_private_cache_holds_only_ciphertext_and_is_kept_without_the_secret(
        private_net: LocalNetwork, nix_key: NixKey, tmp_path: Path) -> None:
    net = private_net
    assert net.daemon is not None and net.keyring is not None
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {USER} password {PASSWORD}\n")
    network_args = ["--network", str(net.network_file)]
    key_args = [*network_args, "--signing-key", str(nix_key.secret_file)]

    victim_tree = tmp_path / "nixshard-private-gc-victim"
    victim_tree.mkdir()
    (victim_tree / "data").write_bytes(os.urandom(200_000))
    victim = nix("nix-store", "--add", str(victim_tree)).stdout.strip()
    push(net, nix_key, [victim])
    cut = time.time() + 0.5
    time.sleep(AGE_GAP)

    marker = os.urandom(1024)
    roots = marker_closure(tmp_path, marker)
    infos = json.loads(nix("nix", "path-info", "--json", "--recursive", *roots).stdout)
    summary = push(net, nix_key, roots)
    assert f"paths pushed:      {len(infos)}" in summary, summary

    # 1. read back through the gateway, with credentials only
    hash_part = StorePath.parse(roots[0]).hash_part
    assert httpx.get(f"{net.daemon.url}/{hash_part}.narinfo").status_code == 401
    copy_and_verify(net, nix_key, netrc, tmp_path / "copy-1", roots, infos)

    # 2. nothing of the closure on any node or bucket; the gateway's own cache has it
    secrets = secrets_of(infos, marker, net.daemon.url)
    assert leaks(stored_blobs(net), secrets) == []
    cache_files = [p for p in (net.root / "serve-cache").rglob("*") if p.is_file()]
    assert any(secrets["marker[0:]"] in p.read_bytes() for p in cache_files)
    keyed = net.keyring.current.record_key(hash_part)  # what nodes do see: the keyed key
    assert len(leaks(stored_blobs(net), {"keyed key": keyed.encode()})) >= 3

    # 3. dedup: a second push stores nothing
    before = held(net)
    summary = push(net, nix_key, roots)
    assert f"paths skipped:     {len(infos)}" in summary, summary
    assert held(net) == before

    # 4. a gateway without the secret serves nothing, and says why
    port = free_port()
    log = tmp_path / "no-secret.log"
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "nixshard", "serve", *network_args, "--listen",
             f"127.0.0.1:{port}", "--cache-dir", str(tmp_path / "no-secret-cache")],
            stdout=out, stderr=subprocess.STDOUT, timeout=60, check=False,
            env={**os.environ, **net.env, "NIXSHARD_CACHE_SECRET": ""})
    assert done.returncode != 0
    assert "the network is private" in log.read_text()

    # 5. audit, repair and gc with no secret
    code, audit = run_json(net, "audit", *network_args, "--scores", str(tmp_path / "scores"))
    assert code == 0 and audit["flagged"] == [], audit
    net.restart_node(2, wipe=True)
    assert net.empty_bucket("node-5") > 0
    code, repair = run_json(net, "repair", *key_args, "--no-progress")
    assert code == 0 and repair["lost"] == [] and repair["shards_written"] > 0, repair
    code, check = run_json(net, "repair", *key_args, "--no-progress", "--dry-run")
    assert code == 0 and check["healthy"] == check["stripes"] > 0, check
    max_age = time.time() - cut
    code, gc = run_json(net, "gc", *key_args, "--max-age", f"{max_age:.2f}s", "--grace", "0s")
    assert code == 0 and gc["skipped"] == [], gc
    expired = [e["key"] for e in gc["expired_records"]]
    assert len(expired) == 1 and expired[0] != Path(victim).name[:32], gc
    assert all(n["deleted_shards"] > 0 for n in gc["nodes"].values()), gc
    net.node("node-1").kill()
    copy_and_verify(net, nix_key, netrc, tmp_path / "copy-2", roots, infos)
    victim_hash = StorePath.parse(victim).hash_part
    auth = (USER, PASSWORD)
    assert httpx.get(f"{net.daemon.url}/{victim_hash}.narinfo", auth=auth).status_code == 404

    # 6. nix copy --to the private gateway
    extra_tree = tmp_path / "nixshard-private-uploaded"
    extra_tree.mkdir()
    (extra_tree / "data").write_bytes(os.urandom(100_000))
    uploaded = nix("nix-store", "--add", str(extra_tree)).stdout.strip()
    nix("nix", "copy", "--to",
        f"{net.daemon.url}?compression=zstd&secret-key={nix_key.secret_file}",
        "--option", "netrc-file", str(netrc), uploaded)
    up_infos = json.loads(nix("nix", "path-info", "--json", uploaded).stdout)
    copy_and_verify(net, nix_key, netrc, tmp_path / "copy-3", [uploaded], up_infos)
    up_hash = StorePath.parse(uploaded).hash_part
    assert leaks(stored_blobs(net), {"uploaded hash part": up_hash.encode()}) == []

"""``nixshard serve`` on a private network (docs/private-caches.md), as real processes.

A gateway of a private network refuses to start without the cache secret,
or without read credentials unless told ``--no-read-auth``; one given a
secret on a public network refuses too.  A working one seals what it is
uploaded, serves it back only to credentialed readers, and leaves nothing
readable on the nodes; a gateway holding another keyring finds nothing.

One private 6-node network (4-of-6, small chunks) for the module; no test
kills a node.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nix_formats.keys import SecretKey
from nix_formats.narinfo import NarInfo
from nix_records import CACHE_SECRET_ENV
from nixshard.localnet import LocalNetwork, ManagedProcess, free_port
from storage_network import CacheSecret, Keyring
from storage_network.config import write_network
from tests.support.network import K, M, keyed_network
from tests.support.trees import make_tree
from tests.support.zstd import unzstd

from .gateway_support import PASSWORD, USER, Upload, make_upload, put_upload

NO_SECRET = {CACHE_SECRET_ENV: ""}
WINDOW = 32


@dataclasses.dataclass
class PrivateNet:
    """A started private network, its publisher's Nix key file and a credentials file."""

    local: LocalNetwork
    key_file: Path
    credentials: Path

    @property
    def key(self) -> SecretKey:
        return SecretKey.parse(self.key_file.read_text())

    @property
    def keyring(self) -> Keyring:
        assert self.local.keyring is not None
        return self.local.keyring


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateNet]:
    root = tmp_path_factory.mktemp("private-gw")
    with keyed_network(root, "gw-private-1", private=True) as (local, key_file):
        credentials = root / "credentials"
        credentials.write_text(f"{USER}:{PASSWORD}\n")
        yield PrivateNet(local, key_file, credentials)


@pytest.fixture(scope="module")
def gateway(private: PrivateNet) -> ManagedProcess:
    """A gateway of the private network with uploads on (read auth on by default)."""
    return private.local.start_gateway("private-gw", extra=(
        "--signing-key", str(private.key_file), "--upload-credentials", str(private.credentials)))


@pytest.fixture(scope="module")
def uploaded(private: PrivateNet, gateway: ManagedProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Upload:
    """One path uploaded through ``gateway`` (a 60 kB incompressible file: many chunks)."""
    up = make_upload(make_tree(tmp_path_factory.mktemp("tree"), "private", 60_000),
                     private.key)
    with httpx.Client(base_url=gateway.url, timeout=60, auth=(USER, PASSWORD)) as c:
        nar, info = put_upload(c, up)
    assert nar.status_code == 201, nar.text
    assert info.status_code == 201, info.text
    return up


def serve_once(local: LocalNetwork, network_file: Path, *extra: str,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``nixshard serve`` expecting it to refuse to start (a gateway that does start
    is killed by the timeout, and the test fails on TimeoutExpired)."""
    return local.run_nixshard(
        "serve", "--network", str(network_file), "--listen", f"127.0.0.1:{free_port()}",
        "--cache-dir", str(local.root / "refused-cache"), *extra,
        env=env if env is not None else NO_SECRET, timeout=60)


def node_blobs(local: LocalNetwork) -> list[tuple[Path, bytes]]:
    """Every file under every node's data directory and its bytes."""
    return [(p, p.read_bytes()) for i in range(1, len(local.nodes) + 1)
            for p in sorted(local.node_dir(i).rglob("*")) if p.is_file()]


def leaks(blob: bytes, windows: set[bytes]) -> bool:
    """Whether ``blob`` holds any of ``windows`` (all ``WINDOW`` bytes long)."""
    return any(blob[i:i + WINDOW] in windows for i in range(len(blob) - WINDOW + 1))


# --- gateways that refuse to start ------------------------------------------------------


def test_a_private_network_without_a_secret_is_not_served(private: PrivateNet) -> None:
    done = serve_once(private.local, private.local.network_file,
                      "--upload-credentials", str(private.credentials))
    assert done.returncode != 0
    assert "not serving: the network is private" in done.stderr


def test_a_secret_on_a_public_network_is_refused(private: PrivateNet, tmp_path: Path) -> None:
    network = private.local.network
    assert network is not None
    public_file = tmp_path / "public.toml"
    write_network(dataclasses.replace(network, private=False), public_file)
    secret_file = tmp_path / "cache.secret"
    secret_file.write_text(private.keyring.text())
    for extra, env in (((), {CACHE_SECRET_ENV: private.keyring.text()}),
                       (("--cache-secret", str(secret_file)), NO_SECRET)):
        done = serve_once(private.local, public_file, *extra, env=env)
        assert done.returncode != 0, extra
        assert "private = true" in done.stderr, extra
        assert "not serving" in done.stderr, extra


def test_a_private_cache_needs_read_credentials_or_no_read_auth(private: PrivateNet) -> None:
    done = serve_once(private.local, private.local.network_file,
                      env=private.local.secret_env)
    assert done.returncode != 0
    assert "a private cache requires read credentials" in done.stderr
    assert "--no-read-auth" in done.stderr


def test_no_read_auth_serves_a_private_cache_openly(private: PrivateNet,
                                                    uploaded: Upload) -> None:
    """The other side of the refusal above: with ``--no-read-auth`` it starts, and
    reads need no credentials."""
    gw = private.local.start_gateway("open-gw", extra=("--no-read-auth",))
    try:
        resp = httpx.get(f"{gw.url}/{uploaded.hash_part}.narinfo", timeout=30)
        assert resp.status_code == 200, resp.text
        assert NarInfo.parse(resp.text).store_path == uploaded.narinfo.store_path
    finally:
        gw.stop()


# --- a working private gateway -----------------------------------------------------------


def test_reads_need_credentials(gateway: ManagedProcess, uploaded: Upload) -> None:
    narinfo = f"{gateway.url}/{uploaded.hash_part}.narinfo"
    anonymous = httpx.get(narinfo, timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert uploaded.narinfo.store_path.hash_part not in anonymous.text
    assert httpx.get(narinfo, auth=(USER, "wrong"), timeout=30).status_code == 401
    resp = httpx.get(narinfo, auth=(USER, PASSWORD), timeout=30)
    assert resp.status_code == 200, resp.text
    info = NarInfo.parse(resp.text)
    assert info.store_path == uploaded.narinfo.store_path
    assert info.nar_hash == uploaded.narinfo.nar_hash
    assert info.nar_size == len(uploaded.nar)
    assert info.sigs == uploaded.narinfo.sigs
    assert httpx.get(f"{gateway.url}/{info.url}", timeout=30).status_code == 401


def test_the_nar_is_served_whole_and_in_ranges(gateway: ManagedProcess,
                                               uploaded: Upload) -> None:
    with httpx.Client(base_url=gateway.url, timeout=60, auth=(USER, PASSWORD)) as c:
        info = NarInfo.parse(c.get(f"/{uploaded.hash_part}.narinfo").text)
        assert info.compression == "zstd"
        resp = c.get(f"/{info.url}")
        assert resp.status_code == 200
        body = resp.content
        assert len(body) == info.file_size == int(resp.headers["Content-Length"])
        assert unzstd(body) == uploaded.nar
        head = c.head(f"/{info.url}")
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(body)
        start, end = 1000, len(body) - 1000  # across chunk boundaries
        part = c.get(f"/{info.url}", headers={"Range": f"bytes={start}-{end - 1}"})
        assert part.status_code == 206
        assert part.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(body)}"
        assert part.content == body[start:end]
        tail = c.get(f"/{info.url}", headers={"Range": "bytes=-100"})
        assert tail.status_code == 206 and tail.content == body[-100:]


def test_the_nodes_hold_nothing_readable(private: PrivateNet, uploaded: Upload) -> None:
    """No node file names or holds the store path, its hash part or the NAR hash, nor
    any 32-byte window of the NAR's incompressible file (the uploaded .nar.zst does:
    the control)."""
    texts = [str(uploaded.narinfo.store_path).encode(), uploaded.hash_part.encode(),
             uploaded.narinfo.nar_hash.encode(),
             uploaded.narinfo.nar_hash.split(":", 1)[1].encode()]
    start = uploaded.nar.index(b"data") + 200
    sample = uploaded.nar[start:start + 4096]
    windows = {sample[i:i + WINDOW] for i in range(len(sample) - WINDOW + 1)}
    assert leaks(uploaded.body, windows)  # the control: the plain .nar.zst holds them
    blobs = node_blobs(private.local)
    assert len(blobs) > 2 * (K + M)
    assert any("records" in path.parts for path, _ in blobs)
    for path, blob in blobs:
        name = str(path).encode()
        for text in texts:
            assert text not in name, (path, text)
            assert text not in blob, (path, text)
        assert not leaks(blob, windows), path


def test_a_gateway_with_another_keyring_finds_nothing(private: PrivateNet,
                                                      gateway: ManagedProcess,
                                                      uploaded: Upload) -> None:
    other = Keyring([CacheSecret.generate("other-cache")])
    stranger = private.local.start_gateway(
        "other-gw", extra=("--no-read-auth",), env={CACHE_SECRET_ENV: other.text()})
    try:
        path = f"/{uploaded.hash_part}.narinfo"
        resp = httpx.get(stranger.url + path, timeout=30)
        assert resp.status_code == 404, resp.text
        assert httpx.get(gateway.url + path, auth=(USER, PASSWORD),
                         timeout=30).status_code == 200
    finally:
        stranger.stop()


def test_a_build_log_is_sealed_too(private: PrivateNet, gateway: ManagedProcess) -> None:
    drv = "0123456789abcdfghijklmnpqrsvwxyz-private-secret-build.drv"
    text = os.urandom(40_000)  # incompressible: in a public cache it would lie in the shards
    with httpx.Client(base_url=gateway.url, timeout=60, auth=(USER, PASSWORD)) as c:
        assert c.get(f"/log/{drv}").status_code == 404
        assert c.put(f"/log/{drv}", content=text).status_code == 201
        got = c.get(f"/log/{drv}")
        assert got.status_code == 200 and got.content == text
    assert httpx.get(f"{gateway.url}/log/{drv}", timeout=30).status_code == 401
    for path, blob in node_blobs(private.local):
        assert b"private-secret-build" not in blob and b"private-secret-build" not in bytes(
            str(path), "utf-8"), path
        assert text[:96] not in blob, path

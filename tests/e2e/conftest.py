"""Fixtures for end-to-end tests: real nix, real node processes, a real daemon."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from nixshard.demo import build_closure
from nixshard.localnet import LocalNetwork, env_with_nix_config
from storage_network.wire.write_auth import Publisher, parse_publisher_secret

if TYPE_CHECKING:
    from nixshard.seaweed import SeaweedServer

GATEWAY_WORKERS = 2
"""``--workers`` of every gateway the end-to-end tests start: two processes on one port,
sharing one disk cache (the default of ``LocalNetwork`` is 1)."""
BIG_TREE_CANDIDATES = ("/usr/lib/python3.11", "/usr/lib/gcc", "/usr/lib/python3")
MIN_BIG_TREE = 20 * 1000 * 1000


def nix(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a nix command with the test NIX_CONFIG; output captured as text.

    With ``check``, a failure fails the test with nix's stderr in the message.
    """
    done = subprocess.run(list(args), capture_output=True, text=True,
                          env=env_with_nix_config(), check=False)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(args[:3])} ... exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


def nixshard(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``nixshard`` command (as ``python -m nixshard``)."""
    return subprocess.run([sys.executable, "-m", "nixshard", *args], capture_output=True,
                          text=True, check=False)


@dataclass(frozen=True)
class NixKey:
    """A key pair made by ``nix-store --generate-binary-cache-key``."""

    secret_file: Path
    public: str

    @property
    def publisher(self) -> Publisher:
        """The key as a publisher (what nodes accept writes from)."""
        return parse_publisher_secret(self.secret_file.read_text())


@dataclass(frozen=True)
class Closure:
    """Store paths to push: ``roots`` and their whole closure with original path info."""

    roots: list[str]
    big: str
    infos: dict[str, dict[str, object]]


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def push(net: LocalNetwork, key: NixKey, paths: list[str]) -> str:
    """``nixshard push``; returns its summary (stdout) and asserts success."""
    res = nixshard("push", "--network", str(net.network_file), "--signing-key",
                   str(key.secret_file), *paths)
    assert res.returncode == 0, res.stderr
    return res.stdout


def copy_from(net: LocalNetwork, key: NixKey, dest: Path, paths: list[str],
              check: bool = True) -> subprocess.CompletedProcess[str]:
    """``nix copy --from`` the daemon into a fresh store root."""
    assert net.daemon is not None
    return nix("nix", "copy", "--from", net.daemon.url, "--to", str(dest),
               "--option", "trusted-public-keys", key.public, *paths, check=check)


def verify(key: NixKey, dest: Path, paths: list[str]) -> None:
    """``nix store verify -r`` the copy, signatures included."""
    nix("nix", "store", "verify", "--store", str(dest), "-r",
        "--option", "trusted-public-keys", key.public, *paths)


def nar_hashes(store: Path | None, paths: list[str]) -> dict[str, str]:
    """NarHash of every path in the closure of ``paths`` according to a store."""
    args = ["--store", str(store)] if store else []
    out = nix("nix", "path-info", "--json", "--recursive", *args, *paths).stdout
    return {e["path"]: e["narHash"] for e in json.loads(out)}


def summary_field(summary: str, name: str) -> str:
    """The value after ``name:`` in the push summary."""
    for line in summary.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name!r} in summary:\n{summary}")


@pytest.fixture(scope="session")
def nix_key(tmp_path_factory: pytest.TempPathFactory) -> NixKey:
    """A fresh Nix binary-cache key pair."""
    d = tmp_path_factory.mktemp("keys")
    nix("nix-store", "--generate-binary-cache-key", "e2e-cache-1", str(d / "sk"), str(d / "pk"))
    return NixKey(d / "sk", (d / "pk").read_text().strip())


@pytest.fixture(scope="session")
def closure(tmp_path_factory: pytest.TempPathFactory) -> Closure:
    """3 built paths with references, plus a >= 20 MB copy of a /usr/lib tree added to the store."""
    built = build_closure("e2e")
    source = next(Path(c) for c in BIG_TREE_CANDIDATES
                  if Path(c).is_dir() and tree_size(Path(c)) >= MIN_BIG_TREE)
    copy = tmp_path_factory.mktemp("tree") / "nixshard-e2e-tree"
    shutil.copytree(source, copy, symlinks=True)
    big = nix("nix-store", "--add", str(copy)).stdout.strip()
    roots = [*built, big]
    entries = json.loads(nix("nix", "path-info", "--json", "--recursive", *roots).stdout)
    return Closure(roots, big, {e["path"]: e for e in entries})


@pytest.fixture
def local_net(tmp_path: Path, nix_key: NixKey) -> Iterator[LocalNetwork]:
    """6 node processes (4-of-6) and a cache daemon, publisher = the nix key."""
    with LocalNetwork(tmp_path, nix_key.publisher, workers=GATEWAY_WORKERS) as net:
        net.start_nodes(6, 4, 2)
        net.start_daemon()
        yield net


@pytest.fixture
def mixed_net(tmp_path: Path, nix_key: NixKey, seaweed_server: SeaweedServer
              ) -> Iterator[LocalNetwork]:
    """A mixed network, 4-of-6: node processes node-1..3 and buckets node-4..6 of the
    session's SeaweedFS, and a cache daemon without a local disk cache (every fetch is
    rebuilt from the network).  Run nixshard commands with ``mixed_net.run_nixshard``
    (it passes the AWS variables)."""
    with LocalNetwork(tmp_path / "net", nix_key.publisher, workers=GATEWAY_WORKERS) as net:
        net.start_nodes(3, 4, 2, buckets=3, seaweed=seaweed_server)
        net.start_daemon(extra=["--cache-max-bytes", "0"])
        yield net

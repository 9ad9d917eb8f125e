"""Fixtures for the nix_formats tests: the real `nix` binary, a small closure, trees.

Golden tests (marked ``nix``) use the ``nix`` fixture.  When `nix` is not
installed they are skipped, except when the ``CI`` environment variable is
set: then they fail, so CI can never silently lose them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from nixshard.localnet import env_with_nix_config

DRV_A = (
    'derivation { name = "nixfmt-test-a"; system = builtins.currentSystem; '
    'builder = "/bin/sh"; args = ["-c" "echo a > $out"]; }'
)
DRV_B = (
    f'let a = {DRV_A}; in derivation {{ name = "nixfmt-test-b"; '
    'system = builtins.currentSystem; builder = "/bin/sh"; '
    'args = ["-c" "PATH=/usr/bin:/bin; mkdir $out; echo ${a} > $out/ref; printf x > $out/x; '
    'chmod +x $out/x; ln -s ${a} $out/link"]; }'
)


@dataclass(frozen=True)
class Nix:
    """Runs nix commands with a daemon-less, offline configuration."""

    env: dict[str, str]

    def run(self, *args: str | os.PathLike[str], input: bytes | None = None) -> bytes:
        """Run a command; return stdout; fail the test with stderr on error."""
        proc = subprocess.run(
            [os.fspath(a) for a in args],
            input=input,
            env=self.env,
            capture_output=True,
            check=False,
            timeout=120,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"{' '.join(os.fspath(a) for a in args)} exited {proc.returncode}:\n"
                f"{proc.stderr.decode(errors='replace')}"
            )
        return proc.stdout

    def attempt(self, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[bytes]:
        """Run a command that may fail; return the finished process."""
        return subprocess.run(
            [os.fspath(a) for a in args],
            env=self.env,
            capture_output=True,
            check=False,
            timeout=120,
        )

    def text(self, *args: str | os.PathLike[str]) -> str:
        """Run a command; return stdout as stripped text."""
        return self.run(*args).decode().strip()


@pytest.fixture(scope="session")
def nix() -> Nix:
    """The real nix, or skip (fail when $CI is set) if it is not installed."""
    missing = [b for b in ("nix", "nix-store", "nix-build") if shutil.which(b) is None]
    if missing:
        message = f"nix binaries not found on PATH: {', '.join(missing)}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}; CI is set, so the golden tests must run")
        pytest.skip(message)
    return Nix(env_with_nix_config())


@dataclass(frozen=True)
class Closure:
    """Two built store paths: ``b`` (a directory) references ``a`` (a file)."""

    a: str
    b: str


@pytest.fixture(scope="session")
def closure(nix: Nix) -> Closure:
    """Build the two-path closure in the real store (cached after the first run)."""
    a = nix.text("nix-build", "--no-out-link", "-E", DRV_A)
    b = nix.text("nix-build", "--no-out-link", "-E", DRV_B)
    return Closure(a=a, b=b)


@dataclass(frozen=True)
class NixKeys:
    """A key pair written by ``nix-store --generate-binary-cache-key``."""

    name: str
    secret_file: Path
    public_file: Path


@pytest.fixture(scope="session")
def nix_keys(nix: Nix, tmp_path_factory: pytest.TempPathFactory) -> NixKeys:
    """A fresh Nix-generated key pair named ``nixfmt-test-1``."""
    d = tmp_path_factory.mktemp("keys")
    name = "nixfmt-test-1"
    nix.run("nix-store", "--generate-binary-cache-key", name, d / "sk", d / "pk")
    return NixKeys(name, d / "sk", d / "pk")


def make_tree(root: Path) -> Path:
    """A tree exercising every NAR feature; returns ``root`` (created here)."""
    root.mkdir()
    # Byte order B < _ < a < é(0xc3a9) < 0xff differs from any locale order.
    for name, data in [("B", b"B\n"), ("_", b"_\n"), ("a", b"a\n"), ("é", b"e\n")]:
        (root / name).write_bytes(data)
    (root / os.fsdecode(b"\xff")).write_bytes(b"not utf-8 name")
    (root / "emptyfile").write_bytes(b"")
    (root / "seven").write_bytes(b"1234567")
    (root / "eight").write_bytes(b"12345678")
    exe = root / "exe"
    exe.write_bytes(b"#!/bin/sh\necho hi\n")
    exe.chmod(0o755)
    # Group/other execute bits alone do not make a file executable in a NAR.
    groupx = root / "groupx"
    groupx.write_bytes(b"x")
    groupx.chmod(0o655)
    (root / "link").symlink_to("a")
    (root / "dangling").symlink_to("/nonexistent/target")
    (root / "dirlink").symlink_to("sub")
    (root / "empty").mkdir()
    deep = root / "sub" / "deeper" / "deepest"
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"deep\n")
    (root / "sub" / "z").write_bytes(b"z")
    # Larger than dump_path's coalescing buffer and than a small chunk_size.
    (root / "big").write_bytes(bytes(range(256)) * 1200 + b"tail")
    # "a-b" < "a.b" < "a/..." as bytes: the directory "a0" sorts after "a.b".
    (root / "a-b").write_bytes(b"1")
    (root / "a.b").write_bytes(b"2")
    (root / "a0").mkdir()
    (root / "a0" / "x").write_bytes(b"3")
    return root


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide test tree (see :func:`make_tree`); do not modify it."""
    return make_tree(tmp_path_factory.mktemp("tree") / "tree")


@pytest.fixture
def tree_factory(tmp_path: Path) -> Callable[[str], Path]:
    """Make a fresh copy of the test tree under ``tmp_path / name``."""
    return lambda name: make_tree(tmp_path / name)

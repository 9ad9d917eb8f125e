"""The post-build hook (nix/post-build-hook.sh) keeps Nix's contract.

The hook's argv tests need only bash and run everywhere; the ones marked
``nix`` run it under a real ``nix-build``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from nixshard.localnet import env_with_nix_config
from tests.nix_tools import NIX_DIR, nix_tool

HOOK = NIX_DIR / "post-build-hook.sh"


@pytest.fixture
def fake_nixshard(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in ``nixshard`` that records its argv (as JSON) and exits $FAKE_STATUS."""
    record = tmp_path / "argv.json"
    fake = tmp_path / "fake-nixshard"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(record)!r}, 'w') as f:\n"
        "    json.dump(sys.argv[1:], f)\n"
        "sys.exit(int(os.environ.get('FAKE_STATUS', '0')))\n")
    fake.chmod(0o755)
    return fake, record


def run_hook(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("OUT_PATHS", "DRV_PATH", "NIXSHARD_PUSH_CONFIG", "NIXSHARD_BIN")}
    return subprocess.run([str(HOOK)], env={**base, **env}, cwd=cwd, capture_output=True,
                          text=True, check=False, timeout=60)


def test_hook_is_executable() -> None:
    assert HOOK.stat().st_mode & stat.S_IXUSR
    assert HOOK.read_text().startswith("#!/usr/bin/env bash\n")


def test_hook_pushes_out_paths(fake_nixshard: tuple[Path, Path], tmp_path: Path) -> None:
    fake, record = fake_nixshard
    proc = run_hook({"NIXSHARD_BIN": str(fake), "NIXSHARD_PUSH_CONFIG": "/some/file",
                     "OUT_PATHS": "/nix/store/aaa-x /nix/store/bbb-y",
                     "DRV_PATH": "/nix/store/ccc-x.drv"}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(record.read_text()) == [
        "push", "--config", "/some/file", "/nix/store/aaa-x", "/nix/store/bbb-y"]
    assert "/nix/store/aaa-x /nix/store/bbb-y" in proc.stderr


def test_hook_default_config_and_no_globbing(fake_nixshard: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    fake, record = fake_nixshard
    (tmp_path / "would-match").write_text("")
    proc = run_hook({"NIXSHARD_BIN": str(fake), "OUT_PATHS": "/nix/store/aaa-x *"}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(record.read_text()) == [
        "push", "--config", "/etc/nixshard/push.toml", "/nix/store/aaa-x", "*"]


def test_hook_fails_when_push_fails(fake_nixshard: tuple[Path, Path], tmp_path: Path) -> None:
    fake, record = fake_nixshard
    proc = run_hook({"NIXSHARD_BIN": str(fake), "OUT_PATHS": "/nix/store/aaa-x",
                     "FAKE_STATUS": "3"}, tmp_path)
    assert proc.returncode == 3
    assert record.exists()
    assert "failed with status 3" in proc.stderr


def test_hook_falls_back_to_the_derivation_outputs(fake_nixshard: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    """Nix 2.8.0 sets OUT_PATHS empty (NixOS/nix#6446): the hook asks nix-store."""
    fake, record = fake_nixshard
    out, dev = tmp_path / "out", tmp_path / "dev"
    out.write_text("")
    fake_store = tmp_path / "fake-nix-store"
    fake_store.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2 $3" = "--query --outputs /nix/store/ddd-x.drv" ] || exit 9\n'
        f"echo {out}\necho {dev}\n")  # dev does not exist: not pushed
    fake_store.chmod(0o755)
    env = {"NIXSHARD_BIN": str(fake), "NIXSHARD_NIX_STORE": str(fake_store),
           "NIXSHARD_PUSH_CONFIG": "/some/file", "OUT_PATHS": "",
           "DRV_PATH": "/nix/store/ddd-x.drv"}
    proc = run_hook(env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(record.read_text()) == ["push", "--config", "/some/file", str(out)]

    record.unlink()
    out.unlink()
    proc = run_hook(env, tmp_path)  # no output exists: nothing pushed, and the hook says so
    assert proc.returncode == 1
    assert not record.exists()


def test_hook_with_nothing_to_push(fake_nixshard: tuple[Path, Path], tmp_path: Path) -> None:
    fake, record = fake_nixshard
    proc = run_hook({"NIXSHARD_BIN": str(fake), "OUT_PATHS": ""}, tmp_path)
    assert proc.returncode == 0
    assert not record.exists()


def nix_build_with_hook(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A real nix-build of a fresh derivation with the hook as post-build-hook."""
    expr = ('derivation { name = "nixshard-hook-test"; system = builtins.currentSystem; '
            'builder = "/bin/sh"; args = [ "-c" "echo built > $out" ]; '
            f'nonce = "{uuid.uuid4().hex}"; }}')
    return subprocess.run(
        [nix_tool("nix-build"), "--no-out-link", "--option", "post-build-hook", str(HOOK),
         "-E", expr],
        env={**env_with_nix_config(), **env}, cwd=tmp_path, capture_output=True, text=True,
        check=False, timeout=300)


@pytest.mark.nix
def test_hook_under_real_nix_build(fake_nixshard: tuple[Path, Path], tmp_path: Path) -> None:
    fake, record = fake_nixshard
    proc = nix_build_with_hook(tmp_path, {"NIXSHARD_BIN": str(fake),
                                          "NIXSHARD_PUSH_CONFIG": "/some/file"})
    assert proc.returncode == 0, proc.stderr
    out_path = proc.stdout.strip()
    assert out_path.startswith("/nix/store/") and out_path.endswith("-nixshard-hook-test")
    assert json.loads(record.read_text()) == ["push", "--config", "/some/file", out_path]


@pytest.mark.nix
def test_failing_hook_fails_nix_build(fake_nixshard: tuple[Path, Path], tmp_path: Path) -> None:
    fake, record = fake_nixshard
    proc = nix_build_with_hook(tmp_path, {"NIXSHARD_BIN": str(fake), "FAKE_STATUS": "3"})
    assert proc.returncode != 0
    assert record.exists()
    assert "failed with exit code 3" in proc.stderr

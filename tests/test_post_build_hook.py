"""The post-build hook (nix/post-build-hook.sh) keeps Nix's contract and never blocks:
it only spools the paths (crash-safe) for ``nixshard push --spool``.

The hook's argv tests need only bash and coreutils and run everywhere; the ones
marked ``nix`` run it under a real ``nix-build``.  What the service does with
the spool, and the proof that the hook opens no connection: tests/uploader/test_spool.py.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from nixshard.localnet import env_with_nix_config
from tests.nix_tools import NIX_DIR, nix_tool
from uploader.spool import SpoolFile, read_spool_file, spool_names

HOOK = NIX_DIR / "post-build-hook.sh"
NAME_RE = re.compile(r"^[0-9]{19,}-[0-9]+\.paths$")


def run_hook(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("OUT_PATHS", "DRV_PATH", "NIXSHARD_SPOOL_DIR", "NIXSHARD_NIX_STORE")}
    return subprocess.run([str(HOOK)], env={**base, **env}, cwd=cwd, capture_output=True,
                          text=True, check=False, timeout=60)


def spooled(spool: Path) -> list[SpoolFile]:
    """The complete files of the spool, oldest first, parsed as the service does."""
    return [read_spool_file(str(spool), name) for name in spool_names(str(spool))]


def test_hook_is_executable() -> None:
    assert HOOK.stat().st_mode & stat.S_IXUSR
    assert HOOK.read_text().startswith("#!/usr/bin/env bash\n")


def test_hook_spools_out_paths(tmp_path: Path) -> None:
    spool = tmp_path / "spool"  # created by the hook
    proc = run_hook({"NIXSHARD_SPOOL_DIR": str(spool),
                     "OUT_PATHS": "/nix/store/aaa-x /nix/store/bbb-y",
                     "DRV_PATH": "/nix/store/ccc-x.drv"}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    (name,) = os.listdir(spool / "new")
    assert NAME_RE.match(name)
    assert (spool / "new" / name).read_text() == (
        "/nix/store/aaa-x\n/nix/store/bbb-y\n# DRV_PATH=/nix/store/ccc-x.drv\n")
    assert os.listdir(spool / "tmp") == []  # nothing left behind
    assert ("spooled /nix/store/aaa-x /nix/store/bbb-y (built from /nix/store/ccc-x.drv) "
            f"as {spool}/new/{name}") in proc.stderr

    proc = run_hook({"NIXSHARD_SPOOL_DIR": str(spool), "OUT_PATHS": "/nix/store/ddd-z"},
                    tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = sorted(os.listdir(spool / "new"))
    assert len(names) == 2 and names[0] == name  # one file per run, never overwritten
    assert (spool / "new" / names[1]).read_text() == "/nix/store/ddd-z\n"


def test_hook_does_not_glob(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (tmp_path / "would-match").write_text("")
    proc = run_hook({"NIXSHARD_SPOOL_DIR": str(spool), "OUT_PATHS": "/nix/store/aaa-x *"},
                    tmp_path)
    assert proc.returncode == 0, proc.stderr
    (name,) = os.listdir(spool / "new")
    assert (spool / "new" / name).read_text() == "/nix/store/aaa-x\n*\n"


def test_hook_fails_loudly_when_it_cannot_spool(tmp_path: Path) -> None:
    """A build meant to be published must not be lost silently: non-zero, and why."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run_hook({"NIXSHARD_SPOOL_DIR": str(blocker / "spool"),
                     "OUT_PATHS": "/nix/store/aaa-x"}, tmp_path)
    assert proc.returncode == 2
    assert (f"cannot write the spool {blocker}/spool: cannot create {blocker}/spool/new and "
            f"{blocker}/spool/tmp; NOT queued for publishing: /nix/store/aaa-x") in proc.stderr

    # the rename fails (a `mv` that fails first on PATH): its temp file is removed
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "mv").write_text("#!/bin/sh\necho 'mv: no space left' >&2\nexit 1\n")
    (fake_bin / "mv").chmod(0o755)
    spool = tmp_path / "spool"
    proc = run_hook({"NIXSHARD_SPOOL_DIR": str(spool), "OUT_PATHS": "/nix/store/aaa-x",
                     "PATH": f"{fake_bin}:{os.environ['PATH']}"}, tmp_path)
    assert proc.returncode == 2
    assert f"cannot write the spool {spool}: cannot rename {spool}/tmp/" in proc.stderr
    assert "NOT queued for publishing: /nix/store/aaa-x" in proc.stderr
    assert os.listdir(spool / "tmp") == [] and os.listdir(spool / "new") == []


def test_hook_falls_back_to_the_derivation_outputs(tmp_path: Path) -> None:
    """Nix 2.8.0 sets OUT_PATHS empty (NixOS/nix#6446): the hook asks nix-store."""
    out, dev = tmp_path / "out", tmp_path / "dev"
    out.write_text("")
    fake_store = tmp_path / "fake-nix-store"
    fake_store.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2 $3" = "--query --outputs /nix/store/ddd-x.drv" ] || exit 9\n'
        f"echo {out}\necho {dev}\n")  # dev does not exist: not spooled
    fake_store.chmod(0o755)
    spool = tmp_path / "spool"
    env = {"NIXSHARD_NIX_STORE": str(fake_store), "NIXSHARD_SPOOL_DIR": str(spool),
           "OUT_PATHS": "", "DRV_PATH": "/nix/store/ddd-x.drv"}
    proc = run_hook(env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    (name,) = os.listdir(spool / "new")
    assert (spool / "new" / name).read_text() == f"{out}\n# DRV_PATH=/nix/store/ddd-x.drv\n"

    out.unlink()
    proc = run_hook(env, tmp_path)  # no output exists: nothing spooled, and the hook says so
    assert proc.returncode == 1
    assert "no output of /nix/store/ddd-x.drv exists: nothing was spooled" in proc.stderr
    assert os.listdir(spool / "new") == [name]

    proc = run_hook({**env, "NIXSHARD_NIX_STORE": "/nonexistent/nix-store"}, tmp_path)
    assert proc.returncode == 1
    assert "--query --outputs /nix/store/ddd-x.drv` failed" in proc.stderr


def test_hook_with_nothing_to_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    proc = run_hook({"NIXSHARD_SPOOL_DIR": str(spool), "OUT_PATHS": ""}, tmp_path)
    assert proc.returncode == 0
    assert "nothing to spool" in proc.stderr
    assert not spool.exists()


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
def test_hook_under_real_nix_build(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    proc = nix_build_with_hook(tmp_path, {"NIXSHARD_SPOOL_DIR": str(spool)})
    assert proc.returncode == 0, proc.stderr
    out_path = proc.stdout.strip()
    assert out_path.startswith("/nix/store/") and out_path.endswith("-nixshard-hook-test")
    drv = subprocess.run(["nix-store", "--query", "--deriver", out_path], capture_output=True,
                         text=True, env=env_with_nix_config(), check=True).stdout.strip()
    ((name, paths, drv_path),) = [(f.name, f.store_paths, f.drv_path) for f in spooled(spool)]
    assert NAME_RE.match(name)
    assert paths == (out_path,) and drv_path == drv


@pytest.mark.nix
def test_a_hook_that_cannot_spool_fails_nix_build(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = nix_build_with_hook(tmp_path, {"NIXSHARD_SPOOL_DIR": str(blocker / "spool")})
    assert proc.returncode != 0
    assert "NOT queued for publishing" in proc.stderr
    assert "failed with exit code 2" in proc.stderr

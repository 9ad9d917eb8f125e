"""Test helpers for the Nix side (nix/): the real nix tools, run with a throwaway config.

Tests using them are marked ``nix`` (tests/conftest.py: skipped without nix on
a laptop, failures in CI).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from nixshard.localnet import env_with_nix_config

REPO = Path(__file__).resolve().parents[1]
NIX_DIR = REPO / "nix"


def nix_tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"`{name}` is not on PATH (Debian: apt-get install nix-bin)"
    return path


def run_nix(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True,
                          env=env_with_nix_config(), check=False, timeout=120)


def nix_eval(expr: str, **argstrs: str) -> object:
    """``nix-instantiate --eval --strict --json`` of ``expr`` (a function of ``argstrs``).

    ``--readonly-mode``: paths interpolated into strings get their store path
    computed, never copied into the store.
    """
    cmd = [nix_tool("nix-instantiate"), "--eval", "--strict", "--json", "--readonly-mode"]
    for name, value in argstrs.items():
        cmd += ["--argstr", name, value]
    proc = run_nix(*cmd, "-E", expr)
    assert proc.returncode == 0, f"nix-instantiate --eval failed:\n{proc.stderr}"
    return json.loads(proc.stdout)

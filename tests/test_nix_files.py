"""The Nix side (nix/): every .nix file parses, the files' arguments and the flake's
metadata evaluate, nix.conf.example holds real Nix settings, and the Nix
examples of docs/nixos.md parse.

Tests marked ``nix`` drive the real ``nix-instantiate``/``nix``
(tests/conftest.py: skipped without nix on a laptop, failures in CI).  The
flake, package and module evaluated in full (and the docs' examples evaluated
against the module): tests/test_nix_package.py; the post-build hook:
tests/test_post_build_hook.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from nixshard.localnet import env_with_nix_config
from tests.nix_tools import NIX_DIR, REPO, nix_eval, nix_tool, run_nix
from tests.support.nix_docs import NIXOS_DOC, nix_blocks


def repo_nix_files() -> list[Path]:
    """Every ``*.nix`` file of the repository, outside hidden directories (.git, caches)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in sorted(files) if f.endswith(".nix"))
    return found


NIX_FILES = repo_nix_files()


# ---------------------------------------------------------------------------
# (1) + (2): every .nix file parses, and the check can fail


def test_the_nix_files_are_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in NIX_FILES}
    assert {"nix/flake.nix", "nix/package.nix", "nix/module.nix"} <= names


@pytest.mark.nix
@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_nix_file_parses(path: Path) -> None:
    # --parse also resolves every variable outside `with`: an undefined name fails here.
    proc = run_nix(nix_tool("nix-instantiate"), "--parse", str(path))
    assert proc.returncode == 0, f"{path} does not parse:\n{proc.stderr}"


@pytest.mark.nix
@pytest.mark.parametrize(("text", "error"), [
    ("{ a = 1; b = ; }", "syntax error"),
    ("{ config, ... }: { x = cfg; }", "undefined variable 'cfg'"),
], ids=["syntax", "undefined-variable"])
def test_broken_nix_fails_to_parse(tmp_path: Path, text: str, error: str) -> None:
    broken = tmp_path / "broken.nix"
    broken.write_text(text)
    proc = run_nix(nix_tool("nix-instantiate"), "--parse", str(broken))
    assert proc.returncode != 0
    assert error in proc.stderr


# ---------------------------------------------------------------------------
# (3) evaluation without nixpkgs


@pytest.mark.nix
def test_function_arguments() -> None:
    got = nix_eval("""{ nixDir }: {
        module = builtins.functionArgs (import (/. + nixDir + "/module.nix"));
        package = builtins.functionArgs (import (/. + nixDir + "/package.nix"));
    }""", nixDir=str(NIX_DIR))
    assert isinstance(got, dict)
    assert {"config", "lib", "pkgs"} <= set(got["module"])
    assert {"lib", "python3Packages", "isa-l", "src"} <= set(got["package"])
    assert got["package"]["src"] is False, "src has no default: callers name the source tree"


@pytest.mark.nix
def test_flake_metadata() -> None:
    got = nix_eval("""{ nixDir }: let flake = import (/. + nixDir + "/flake.nix"); in {
        inherit (flake) description;
        inputs = builtins.attrNames flake.inputs;
        nixpkgsUrl = flake.inputs.nixpkgs.url;
    }""", nixDir=str(NIX_DIR))
    assert isinstance(got, dict)
    assert isinstance(got["description"], str) and got["description"].strip()
    assert "nixpkgs" in got["inputs"]
    assert got["nixpkgsUrl"].endswith("/nixos-unstable")


# ---------------------------------------------------------------------------
# nix.conf.example


@pytest.mark.nix
def test_nix_conf_example_holds_real_settings() -> None:
    env = env_with_nix_config()
    env["NIX_CONFIG"] += (NIX_DIR / "nix.conf.example").read_text()
    proc = subprocess.run([nix_tool("nix"), "show-config", "--json"], env=env,
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "unknown setting" not in proc.stderr
    settings = json.loads(proc.stdout)
    assert "http://127.0.0.1:5000" in settings["substituters"]["value"]
    assert any(k.startswith("mycache-1:") for k in settings["trusted-public-keys"]["value"])
    assert "http://127.0.0.1:5000" in settings["trusted-substituters"]["value"]
    assert settings["fallback"]["value"] is True
    assert settings["connect-timeout"]["value"] == 5
    assert settings["post-build-hook"]["value"] == "/etc/nixshard/post-build-hook.sh"
    assert settings["netrc-file"]["value"] == "/etc/nix/netrc"


# ---------------------------------------------------------------------------
# docs/nixos.md


def test_nixos_doc_has_examples() -> None:
    blocks = nix_blocks(NIXOS_DOC)
    # the flake, then a node, a private gateway, a CI hook and the maintenance timers
    assert len(blocks) >= 5
    assert "nixosModules.default" in blocks[0] and "overlays.default" in blocks[0]


@pytest.mark.nix
@pytest.mark.parametrize("index", range(len(nix_blocks(NIXOS_DOC))))
def test_nixos_doc_example_parses(index: int, tmp_path: Path) -> None:
    example = tmp_path / "example.nix"
    example.write_text(nix_blocks(NIXOS_DOC)[index])
    proc = run_nix(nix_tool("nix-instantiate"), "--parse", str(example))
    assert proc.returncode == 0, f"example {index} of docs/nixos.md:\n{proc.stderr}"

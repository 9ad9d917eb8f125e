"""What the local Nix store knows about the paths to push.

Uses ``nix path-info --json --recursive`` (Nix 2.8 prints a JSON list of
objects with ``path``, ``narHash`` (SRI), ``narSize``, ``references``
(full paths), ``deriver``, ``ca``), and orders the closure so that every
path comes after its references.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nix_formats.errors import NixFormatError
from nix_formats.hash import parse_nix_hash
from nix_formats.store_path import StorePath

from .errors import NixQueryError


@dataclass(frozen=True)
class PathInfo:
    """One store path to push.

    ``nar_hash`` (32-byte SHA-256) and ``nar_size`` (bytes) are what the
    Nix database says, or None when pushing a tree Nix does not know.
    ``references`` are full store paths; ``deriver`` a full ``.drv`` path.
    """

    store_path: StorePath
    source: str
    references: tuple[str, ...] = ()
    deriver: str | None = None
    ca: str | None = None
    nar_hash: bytes | None = None
    nar_size: int | None = None


def nix_env(*settings: str) -> dict[str, str]:
    """os.environ with ``experimental-features = nix-command`` and ``settings`` added.

    They go before the user's own NIX_CONFIG, so the user's lines still win.
    """
    env = dict(os.environ)
    lines = ["experimental-features = nix-command", *settings, env.get("NIX_CONFIG", "")]
    env["NIX_CONFIG"] = "\n".join(lines).strip() + "\n"
    return env


def query_closure(paths: Sequence[str]) -> list[PathInfo]:
    """The closure of ``paths``, references first.

    Raises:
        NixQueryError: ``nix`` is missing, a path is not a valid store path,
            or its output cannot be parsed.
    """
    if not paths:
        return []
    cmd = ["nix", "path-info", "--json", "--recursive", *paths]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=nix_env(), check=False)
    except FileNotFoundError as exc:
        raise NixQueryError("`nix` is not on PATH: install Nix (Debian: nix-bin)") from exc
    if proc.returncode != 0:
        raise NixQueryError(f"nix path-info failed: {proc.stderr.strip()}")
    try:
        entries = json.loads(proc.stdout)
        infos = [_path_info(e) for e in entries]
    except (ValueError, KeyError, TypeError, NixFormatError) as exc:
        raise NixQueryError(f"cannot read nix path-info output: {exc}") from exc
    return topological_order(infos)


def _path_info(entry: dict[str, object]) -> PathInfo:
    path = str(entry["path"])
    _, digest = parse_nix_hash(str(entry["narHash"]))
    refs = entry.get("references") or []
    assert isinstance(refs, list)
    deriver = entry.get("deriver")
    ca = entry.get("ca")
    return PathInfo(
        store_path=StorePath.parse(path),
        source=path,
        references=tuple(sorted(str(r) for r in refs)),
        deriver=str(deriver) if deriver else None,
        ca=str(ca) if ca else None,
        nar_hash=digest,
        nar_size=int(str(entry["narSize"])),
    )


def topological_order(infos: Iterable[PathInfo]) -> list[PathInfo]:
    """``infos`` ordered so each path follows its references (ties by path name).

    Raises:
        NixQueryError: the references form a cycle other than self-references.
    """
    by_path = {i.store_path.path: i for i in infos}
    done: set[str] = set()
    order: list[PathInfo] = []
    visiting: set[str] = set()

    def visit(path: str) -> None:
        if path in done:
            return
        if path in visiting:
            raise NixQueryError(f"reference cycle through {path}")
        visiting.add(path)
        for ref in by_path[path].references:
            if ref != path and ref in by_path:
                visit(ref)
        visiting.discard(path)
        done.add(path)
        order.append(by_path[path])

    for path in sorted(by_path):
        visit(path)
    return order

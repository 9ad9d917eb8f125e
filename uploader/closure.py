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
from nix_formats.store_path import STORE_DIR, StorePath

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


def _run_path_info(args: Sequence[str]) -> object:
    """The parsed JSON of ``nix path-info --json ARGS``.

    Raises:
        NixQueryError: ``nix`` is missing, it failed, or printed no JSON.
    """
    cmd = ["nix", "path-info", "--json", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=nix_env(), check=False)
    except FileNotFoundError as exc:
        raise NixQueryError("`nix` is not on PATH: install Nix (Debian: nix-bin)") from exc
    if proc.returncode != 0:
        raise NixQueryError(f"nix path-info failed: {proc.stderr.strip()}")
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise NixQueryError(f"cannot read nix path-info output: {exc}") from exc


def _json_entries(data: object) -> list[tuple[str, dict[str, object] | None]]:
    """(path, info or None when not valid) from either JSON shape of ``nix path-info``.

    Nix 2.8 prints a list of objects (``"valid": false`` for an invalid
    path); newer Nix prints an object keyed by path (``null`` when invalid).
    """
    if isinstance(data, dict):
        return [(str(path), e if isinstance(e, dict) else None) for path, e in data.items()]
    if not isinstance(data, list):
        raise TypeError(f"expected a JSON list or object, got {type(data).__name__}")
    return [(str(e["path"]), None if e.get("valid") is False else e) for e in data]


def resolve_store_path(arg: str, store_dir: str = STORE_DIR) -> str:
    """The store path ``arg`` names: itself, or where its symlinks lead (``./result``).

    Symlinks are followed only until a path directly in ``store_dir`` is
    reached (a store path may itself be a symlink).

    Raises:
        NixQueryError: ``arg`` does not exist, or does not lead to a path
            directly in ``store_dir`` (the message says where it leads).
    """
    if not os.path.lexists(arg):
        raise NixQueryError(f"{arg} does not exist")
    path = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(arg))),
                        os.path.basename(os.path.abspath(arg)))
    for _ in range(40):
        if os.path.dirname(path) == store_dir or not os.path.islink(path):
            break
        target = os.path.join(os.path.dirname(path), os.readlink(path))
        path = os.path.join(os.path.realpath(os.path.dirname(target)), os.path.basename(target))
    if os.path.dirname(path) != store_dir:
        raise NixQueryError(f"{arg} is not a store path: it leads to {path}, which is not "
                            f"directly in {store_dir}")
    return path


def query_closure(paths: Sequence[str]) -> list[PathInfo]:
    """The closure of ``paths`` (store paths, or symlinks to them), references first.

    Raises:
        NixQueryError: a path does not exist or is not in the Nix store,
            ``nix`` is missing, a path is not valid (not built, or still being
            built), or its output cannot be parsed.
    """
    if not paths:
        return []
    data = _run_path_info(["--recursive", *(resolve_store_path(p) for p in paths)])
    try:
        entries = _json_entries(data)
        invalid = sorted(path for path, e in entries if e is None)
        if invalid:
            raise NixQueryError(f"not valid in the Nix store (not built yet?): "
                                f"{', '.join(invalid)}")
        infos = [_path_info(path, e) for path, e in entries if e is not None]
    except (ValueError, KeyError, TypeError, NixFormatError) as exc:
        raise NixQueryError(f"cannot read nix path-info output: {exc}") from exc
    return topological_order(infos)


def valid_paths(paths: Sequence[str]) -> set[str]:
    """The members of ``paths`` (full store paths) that Nix reports valid.

    A path being built, or not in the store at all, is not valid yet.  One
    ``nix path-info --json`` call for all of them.

    Raises:
        NixQueryError: ``nix`` is missing, failed, or printed something unreadable.
    """
    if not paths:
        return set()
    data = _run_path_info(list(paths))
    try:
        return {path for path, e in _json_entries(data) if e is not None}
    except (KeyError, TypeError) as exc:
        raise NixQueryError(f"cannot read nix path-info output: {exc}") from exc


def _path_info(path: str, entry: dict[str, object]) -> PathInfo:
    _, digest = parse_nix_hash(str(entry["narHash"]))
    refs = entry.get("references") or []
    if not isinstance(refs, list):
        raise TypeError(f"{path}: references is not a list")
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

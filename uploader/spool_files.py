"""The spool directory of ``nixshard push --spool``: its layout and its files.

``nix/post-build-hook.sh`` never touches the network: it writes the paths
Nix just built to a spool directory and returns in milliseconds; the spool
service (:mod:`uploader.spool`) pushes them.  The spool layout (the hook
writes it, maildir style)::

    DIR/tmp/<epoch-ns>-<pid>.paths   being written by a hook; never read here
    DIR/new/<epoch-ns>-<pid>.paths   complete: one store path per line, then
                                     optionally ``# DRV_PATH=<drv>``
    DIR/rejected/<name>              files that are not spool files (moved here
                                     by the spool service, one log line each)

A hook writes under ``tmp/``, fsyncs, renames into ``new/`` and fsyncs
``new/``, so every file seen in ``new/`` is complete.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from nix_formats.errors import StorePathError
from nix_formats.store_path import StorePath

from .errors import UploaderError

DEFAULT_SPOOL_DIR = "/var/spool/nixshard"
"""Where ``nix/post-build-hook.sh`` spools by default (``$NIXSHARD_SPOOL_DIR``)."""
NEW_DIR, TMP_DIR, REJECTED_DIR = "new", "tmp", "rejected"
SPOOL_SUFFIX = ".paths"
DRV_PREFIX = "# DRV_PATH="
MAX_SPOOL_FILE_BYTES = 1 << 20
"""A spool file larger than this (bytes) is rejected: a hook writes a few store paths."""
STALE_TMP_SECONDS = 3600.0
"""A file in ``tmp/`` older than this (seconds) was left by a hook that did not finish."""


class SpoolError(UploaderError):
    """The spool directory cannot be created, listed or changed (the message says why)."""


class SpoolFileError(SpoolError):
    """A file in the spool is not a list of store paths (the message names the file and line)."""


@dataclass(frozen=True)
class SpoolFile:
    """One spool file: ``name`` in ``new/``, the store paths it lists (in order, once
    each), and the derivation they were built from, if the hook knew it."""

    name: str
    store_paths: tuple[str, ...]
    drv_path: str | None = None


def parse_spool_file(name: str, text: str) -> SpoolFile:
    """Parse the text of spool file ``name``.

    Lines: full store paths (``/nix/store/<hash>-<name>``), blank lines,
    ``# DRV_PATH=<path>`` and other ``#`` comments.

    Raises:
        SpoolFileError: a line is not a store path, or no line is.
    """
    paths: list[str] = []
    drv: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith(DRV_PREFIX):
                drv = line.removeprefix(DRV_PREFIX).strip() or None
            continue
        try:
            path = StorePath.parse(line).path
        except StorePathError as exc:
            raise SpoolFileError(f"spool file {name}, line {number}: {exc}") from None
        if path not in paths:
            paths.append(path)
    if not paths:
        raise SpoolFileError(f"spool file {name} lists no store path")
    return SpoolFile(name, tuple(paths), drv)


def read_spool_file(spool_dir: str, name: str) -> SpoolFile:
    """Read and parse ``spool_dir/new/name``.

    Raises:
        FileNotFoundError: it is gone (pushed or removed meanwhile).
        SpoolFileError: it is not UTF-8 text, larger than
            :data:`MAX_SPOOL_FILE_BYTES`, or not a list of store paths.
        SpoolError: it cannot be read (permissions, I/O error).
    """
    path = os.path.join(spool_dir, NEW_DIR, name)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPOOL_FILE_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SpoolError(f"cannot read the spool file {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_SPOOL_FILE_BYTES:
        raise SpoolFileError(f"spool file {name} is larger than {MAX_SPOOL_FILE_BYTES} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise SpoolFileError(f"spool file {name} is not UTF-8 text: {exc}") from None
    return parse_spool_file(name, text)


def prepare_spool(spool_dir: str) -> None:
    """Create ``spool_dir`` with its ``new/`` and ``tmp/`` if missing.

    Raises:
        SpoolError: they cannot be created, or are not directories.
    """
    for sub in (NEW_DIR, TMP_DIR):
        path = os.path.join(spool_dir, sub)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool directory {path}: "
                             f"{exc.strerror or exc}") from exc


def spool_names(spool_dir: str) -> list[str]:
    """The names of the complete spool files (``new/*.paths``, not hidden), oldest first.

    Raises:
        SpoolError: ``new/`` cannot be listed.
    """
    path = os.path.join(spool_dir, NEW_DIR)
    try:
        with os.scandir(path) as entries:
            names = [e.name for e in entries
                     if e.name.endswith(SPOOL_SUFFIX) and not e.name.startswith(".")]
    except OSError as exc:
        raise SpoolError(f"cannot list the spool directory {path}: "
                         f"{exc.strerror or exc}") from exc
    return sorted(names, key=_age_order)


def _age_order(name: str) -> tuple[int, str]:
    """Sort key: the hook's ``<epoch-ns>-<pid>`` prefix as a number, then the name."""
    stamp = name.split("-", 1)[0]
    return (int(stamp) if stamp.isdigit() else 0, name)


def stale_temp_files(spool_dir: str, older_than: float = STALE_TMP_SECONDS,
                     now: float | None = None) -> list[str]:
    """Names in ``tmp/`` last modified more than ``older_than`` seconds before ``now``
    (wall clock, default: now): left by hooks that did not finish.  Never raises."""
    now = time.time() if now is None else now
    try:
        with os.scandir(os.path.join(spool_dir, TMP_DIR)) as entries:
            return sorted(e.name for e in entries
                          if e.is_file() and now - e.stat().st_mtime > older_than)
    except OSError:
        return []


def remove_spool_file(spool_dir: str, name: str) -> None:
    """Delete ``new/name`` (already gone is fine).

    Raises:
        SpoolError: it cannot be deleted.
    """
    try:
        os.unlink(os.path.join(spool_dir, NEW_DIR, name))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SpoolError(f"cannot delete the spool file {name}: {exc.strerror or exc}") from exc


def reject_spool_file(spool_dir: str, name: str) -> str:
    """Move ``new/name`` to ``rejected/name``; returns the new path.

    Raises:
        SpoolError: it cannot be moved.
    """
    target_dir = os.path.join(spool_dir, REJECTED_DIR)
    target = os.path.join(target_dir, name)
    try:
        os.makedirs(target_dir, exist_ok=True)
        os.replace(os.path.join(spool_dir, NEW_DIR, name), target)
    except OSError as exc:
        raise SpoolError(f"cannot move the spool file {name} to {target_dir}: "
                         f"{exc.strerror or exc}") from exc
    return target

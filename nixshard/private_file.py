"""Replacing a file atomically, keeping its owner: nixshard's one file writer.

Used for the files nixshard writes secrets into, mode 0600 from the moment
they exist: a private cache's keyring (``nixshard key``), the gateway's
credentials file (``nixshard credentials``), the netrc file of ``nixshard
use``; and, keeping its mode, for the nix.conf ``nixshard use`` edits
(:func:`nixshard.nix_conf.write_atomic`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, text: str, *, keep_mode: bool = False,
                  new_mode: int = 0o600) -> None:
    """Replace ``path`` by ``text`` atomically: a new file in the same directory, created
    with mode 0600 (never readable by others, not even for a moment), with the old file's
    owner and group when they can be set, written, synced to disk and renamed over
    ``path``.

    Args:
        keep_mode: give the new file the old file's mode (``new_mode`` when there is no
            old file) before anything is written; else it stays 0600.
        new_mode: the mode of a new file when ``keep_mode``.

    Raises:
        OSError: the directory is not writable, the disk is full, ...
    """
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if old is not None:
                try:
                    os.fchown(fh.fileno(), old.st_uid, old.st_gid)
                except PermissionError:
                    pass  # not ours to give away: the new file stays ours
            if keep_mode:
                os.fchmod(fh.fileno(), old.st_mode & 0o7777 if old is not None else new_mode)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise

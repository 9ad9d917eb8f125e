"""Writing a secret file: atomically, mode 0600, keeping its owner.

Used for the files nixshard writes secrets into: a private cache's keyring
(``nixshard key``) and the gateway's credentials file (``nixshard credentials``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically: a new file of mode 0600 in the same directory,
    with the old file's owner and group when they can be set.

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
                    pass  # not ours to give away: the new file stays ours, mode 0600
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise

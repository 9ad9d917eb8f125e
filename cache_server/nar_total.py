"""The byte total of the local NAR cache, shared by the processes using its directory.

:class:`SharedTotal` is the ``nar.total`` file of :mod:`cache_server.nar_cache`
(see its Eviction notes): the number of bytes of the files in ``nar/``, and the
``flock`` under which every change to those files and to that number is made.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SharedTotal:
    """A byte count in a file, and the ``flock`` its changes are made under.

    The file holds one non-negative integer (bytes) as :attr:`WIDTH`-character
    space-padded decimal, rewritten in place; a missing, empty or unreadable
    number reads as 0.  :meth:`read` and :meth:`write` expect the caller to hold
    :meth:`locked`; :meth:`peek` looks without waiting.  ``path`` is created
    (mode 0600) when missing and stays open until :meth:`close`.

    Raises:
        OSError: ``path`` cannot be opened or created (here), or the disk fails
            (from :meth:`locked`, :meth:`read`, :meth:`write`, :meth:`peek`).
    """

    WIDTH = 20
    """Characters of the number in the file (decimal, space-padded on the left)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lock (waits for other processes' changes)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def read(self) -> int:
        """The number, in bytes (0 for a new file); hold the lock."""
        try:
            return int(os.pread(self.fd, 32, 0))
        except ValueError:
            return 0

    def write(self, value: int) -> None:
        """Replace the number with ``value`` bytes; hold the lock."""
        os.pwrite(self.fd, b"%*d" % (self.WIDTH, value), 0)

    def peek(self) -> int | None:
        """The number, in bytes, without waiting: None while a change is under way, or
        once closed."""
        if self.fd < 0:
            return None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        try:
            return self.read()
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

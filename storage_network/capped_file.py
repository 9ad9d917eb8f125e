"""Reading a local file a program is handed (a key, a map, a bootstrap file, an audit
report) with a size cap, so a wrong path (a device, a huge file) is refused, not read."""

from __future__ import annotations

import errno
from pathlib import Path


def read_capped(path: str | Path, limit: int) -> bytes:
    """The bytes of the file at ``path``, at most ``limit`` (bytes).

    Raises:
        OSError: the file cannot be read, or (errno ``EFBIG``, strerror
            ``"larger than LIMIT bytes"``) it holds more than ``limit`` bytes.
    """
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes")
    return data

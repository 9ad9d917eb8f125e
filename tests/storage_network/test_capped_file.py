"""storage_network.capped_file.read_capped: a local file is read up to its cap, never beyond."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from storage_network.capped_file import read_capped


def test_a_file_at_the_cap_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_capped(path, 10) == b"x" * 10
    with pytest.raises(OSError, match="larger than 9 bytes") as caught:
        read_capped(path, 9)
    assert caught.value.errno == errno.EFBIG


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_capped(tmp_path / "absent", 10)

"""Upload staging: unclaimed uploads expire, interrupted ones never count as staged."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cache_server.staging import Staging


def test_sweep_removes_only_uploads_older_than_max_age(tmp_path: Path) -> None:
    staging = Staging(tmp_path, max_age=3600)
    old, new = tmp_path / "old.nar", tmp_path / "new.nar"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert staging.sweep() == 1
    assert staging.path("old.nar") is None
    assert staging.path("new.nar") == new


def test_partial_bodies_are_dropped_at_start_and_never_found(tmp_path: Path) -> None:
    (tmp_path / "abc.nar.part-1234").write_bytes(b"half")
    staging = Staging(tmp_path)
    assert not (tmp_path / "abc.nar.part-1234").exists()
    assert staging.path("abc.nar") is None
    staging.remove("abc.nar")  # absent: no error

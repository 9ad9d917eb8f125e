"""NAR writing: dump_path and nar_hash_of_path (no nix binary needed; golden tests elsewhere)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from nix_formats.errors import NarError
from nix_formats.nar import dump_path, nar_hash_of_path
from nix_formats.nar_parser import validate_nar

from .handmade_nar import directory, nar, reg, sym

# -- dump_path ------------------------------------------------------------------


def test_dump_regular_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"hello\n")
    assert b"".join(dump_path(f)) == nar(reg(b"hello\n"))


def test_dump_executable_uses_owner_bit_only(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    f.chmod(0o700)
    assert b"".join(dump_path(f)) == nar(reg(b"x", executable=True))
    f.chmod(0o677)
    assert b"".join(dump_path(f)) == nar(reg(b"x"))


def test_dump_symlink_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"data")
    link = tmp_path / "link"
    link.symlink_to("target")
    assert b"".join(dump_path(link)) == nar(sym(b"target"))


def test_dump_directory_sorted_by_bytes(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    for name in ["b", "B", "_", "\u00e9", "a"]:
        (d / name).write_bytes(name.encode())
    (d / "sub").mkdir()
    expected = nar(
        directory(
            (b"B", reg(b"B")),
            (b"_", reg(b"_")),
            (b"a", reg(b"a")),
            (b"b", reg(b"b")),
            (b"sub", directory()),
            ("\u00e9".encode(), reg("\u00e9".encode())),
        )
    )
    assert b"".join(dump_path(d)) == expected
    assert b"".join(dump_path(os.fsencode(d))) == expected
    assert b"".join(dump_path(str(d))) == expected


def test_dump_accepts_every_path_type(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    assert b"".join(dump_path(f)) == b"".join(dump_path(str(f))) == b"".join(dump_path(bytes(f)))


def test_dump_streams_big_files_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "big").write_bytes(data)
    for i in range(100):
        (tmp_path / "d" / f"small{i:03}").write_bytes(b"s" * i)
    pieces = list(dump_path(tmp_path / "d", chunk_size=256 * 1024))
    assert max(len(p) for p in pieces) <= 256 * 1024 + 8
    assert len(pieces) >= 12
    whole = b"".join(pieces)
    stats = validate_nar([whole])
    assert stats.contents_size == len(data) + sum(range(100))
    assert stats.regular_files == 101


def test_dump_coalesces_small_tokens(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    for i in range(800):
        (d / f"f{i:05}").write_bytes(b"x" * 300)
    pieces = list(dump_path(d))
    assert all(len(p) >= 128 * 1024 for p in pieces[:-1])
    assert 2 <= len(pieces) <= 4


def test_dump_and_parse_deep_tree_without_recursion(tmp_path: Path) -> None:
    p = tmp_path / "deep"
    p.mkdir()
    q = p
    for _ in range(400):
        q = q / "d"
        q.mkdir()
    (q / "leaf").write_bytes(b"leaf")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(150)  # far below the depth of the tree
    try:
        stats = validate_nar(dump_path(p))
    finally:
        sys.setrecursionlimit(limit)
    assert stats.directories == 401
    assert stats.regular_files == 1


def test_dump_rejects_fifo(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    os.mkfifo(d / "pipe")
    with pytest.raises(NarError, match=r"pipe' has an unsupported type \(mode p"):
        b"".join(dump_path(d))


def test_dump_missing_path_is_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(dump_path(tmp_path / "missing"))


def test_dump_bad_chunk_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_size must be positive, got 0"):
        dump_path(tmp_path, chunk_size=0)


def test_nar_hash_of_path(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    data = b"".join(dump_path(tmp_path))
    assert nar_hash_of_path(tmp_path) == (hashlib.sha256(data).digest(), len(data))


def test_dump_then_parse_tree(tree: Path) -> None:
    stats = validate_nar(dump_path(tree))
    assert stats.symlinks == 3
    assert stats.executables == 1
    assert stats.directories == 6

"""Directory trees to turn into store paths (see :func:`nixshard.demo.tree_path_info`)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def make_tree(root: Path, name: str, size: int, seed: int = 0) -> Path:
    """``root/name``: one ``size``-byte file ``data`` of varied bytes (a distinct,
    incompressible NAR per ``seed``) and a small text file."""
    tree = root / name
    tree.mkdir(parents=True)
    data = b"".join(hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(size // 32 + 1))
    (tree / "data").write_bytes(data[:size])
    (tree / "small").write_text(f"tree {name}\n")
    return tree

"""A storage node's shard files on its disk, and rotting them (or any bytes)."""

from __future__ import annotations

import random
from pathlib import Path


def shard_files(data_dir: Path) -> list[Path]:
    """The shard files under a node's data directory, sorted."""
    return sorted(p for p in (data_dir / "shards").rglob("*") if p.is_file())


def flip_tail(path: Path, count: int = 64) -> None:
    """Invert the last ``count`` bytes of a file (bit rot a digest catches)."""
    data = bytearray(path.read_bytes())
    for i in range(max(0, len(data) - count), len(data)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def flip_bit(data: bytes, pos: int) -> bytes:
    """``data`` with the lowest bit of byte ``pos`` inverted."""
    b = bytearray(data)
    b[pos] ^= 0x01
    return bytes(b)


def rot_shards(data_dir: Path, fraction: float = 1.0, seed: int = 1) -> list[Path]:
    """Flip the tail (:func:`flip_tail`) of ``fraction`` of a node's shard files, at
    least one, chosen with ``random.Random(seed)``; returns them.

    ``fraction`` 1 rots every file, in :func:`shard_files` order.
    """
    files = shard_files(data_dir)
    assert files, f"no shard files under {data_dir}"
    chosen = files if fraction >= 1 else random.Random(seed).sample(
        files, max(1, int(len(files) * fraction)))
    for path in chosen:
        flip_tail(path)
    return chosen

"""The data bench.py moves: store paths made from /usr/lib trees, an edited copy, a big tree."""

from __future__ import annotations

import json
import math
import random
import subprocess
from collections.abc import Sequence
from pathlib import Path

from benchmarks.bench_measure import BenchError

MIB = 1 << 20
RANDOM_PART = 256 * 1024  # random bytes per MiB block of the big tree; the rest is real data
SEED = 20240505


def add_to_store(tree: Path, env: dict[str, str]) -> str:
    """``nix-store --add`` a directory; its store path."""
    out = subprocess.run(["nix-store", "--add", str(tree)], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        raise BenchError(f"nix-store --add {tree}: {out.stderr.strip()}")
    return out.stdout.strip()


def regular_files(tree: Path) -> list[Path]:
    """Regular files (not symlinks) under ``tree``, sorted by relative path."""
    files = [p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()]
    return sorted(files, key=lambda p: p.relative_to(tree).as_posix())


def edit_every_20th(tree: Path) -> int:
    """Change every 20th regular file of ``tree`` deterministically; how many were changed.

    Eight bytes in the middle are overwritten and a short line is appended.
    """
    changed = 0
    for i, path in enumerate(regular_files(tree)):
        if i % 20:
            continue
        path.chmod(path.stat().st_mode | 0o200)
        data = bytearray(path.read_bytes())
        mid = len(data) // 2
        data[mid:mid + 8] = f"{i:08x}".encode()
        data += f"\n# nixshard bench v2 edit {i}\n".encode()
        path.write_bytes(bytes(data))
        changed += 1
    return changed


def real_bytes_pool(trees: Sequence[Path], limit: int) -> bytes:
    """Up to ``limit`` bytes of the regular files under ``trees``, concatenated."""
    parts: list[bytes] = []
    size = 0
    for tree in trees:
        for path in regular_files(tree):
            data = path.read_bytes()[:limit - size]
            parts.append(data)
            size += len(data)
            if size >= limit:
                return b"".join(parts)
    return b"".join(parts)


def make_big_tree(dst: Path, mib: int, pool: bytes) -> None:
    """``mib`` MiB of deterministic, not trivially compressible files under ``dst``.

    Each MiB is 256 KiB of seeded random bytes then 768 KiB of real bytes from
    ``pool``; each pass over the pool goes through another byte permutation, so no
    stretch repeats (the chunker would dedup it) and the real parts keep their
    compressibility.
    """
    dst.mkdir(parents=True)
    rng = random.Random(SEED)
    real = MIB - RANDOM_PART
    table = bytes(range(256))
    cursor = len(pool)
    for number in range(math.ceil(mib / 64)):
        with open(dst / f"part-{number:03d}.bin", "wb") as out:
            for _ in range(min(64, mib - number * 64)):
                out.write(rng.randbytes(RANDOM_PART))
                if cursor + real > len(pool):
                    cursor = 0
                    table = bytes(rng.sample(range(256), 256))
                out.write(pool[cursor:cursor + real].translate(table))
                cursor += real


def nar_sizes(paths: Sequence[str], env: dict[str, str]) -> dict[str, int]:
    """narSize of each path (``nix path-info --json``)."""
    out = subprocess.run(["nix", "path-info", "--json", *paths], capture_output=True,
                         text=True, env=env, check=True).stdout
    data = json.loads(out)
    if isinstance(data, dict):
        return {p: int(v["narSize"]) for p, v in data.items()}
    return {item["path"]: int(item["narSize"]) for item in data}

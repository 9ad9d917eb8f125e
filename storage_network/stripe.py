"""Stripes, shard ids and the proof each shard carries.

A chunk is compressed and erasure-coded into a *stripe* of n = k + m
fragments.  The stripe is named by its *root*: a Merkle root over the n
fragments, so a manifest needs 32 bytes per chunk whatever n is, and every
single shard can still be checked on its own.

Tree: leaf i = SHA-256(0x00 || fragment i); the leaves are padded with 32
zero bytes up to the next power of two W; an inner node is
SHA-256(0x01 || left || right).  A shard is stored under the id
``<root hex>.<index>`` and its body is::

    u8 depth | depth x 32-byte sibling hashes (leaf level first) | fragment

``depth`` = log2(W).  A node checks the body against the id on write; a
reader checks it again on read.  The fragment is the pyeclib fragment
(its own 80-byte header included).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from .errors import ShardProofError

ROOT_BYTES = 32
SHARD_ID_RE = re.compile(r"\A([0-9a-f]{64})\.(0|[1-9][0-9]{0,2})\Z")
MAX_DEPTH = 8  # at most 256 shards per stripe
_EMPTY = bytes(32)


def _leaf(fragment: bytes | memoryview) -> bytes:
    h = hashlib.sha256(b"\x00")
    h.update(fragment)
    return h.digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def build_stripe(fragments: Sequence[bytes]) -> tuple[bytes, list[bytes]]:
    """Build the tree over ``fragments``.

    Returns:
        ``(root, proofs)``: the 32-byte root and, per fragment, the proof
        prefix (``u8 depth`` + sibling hashes) that goes before it in its
        shard body.

    Raises:
        ValueError: no fragments, or more than 2**MAX_DEPTH.
    """
    n = len(fragments)
    if not 0 < n <= 1 << MAX_DEPTH:
        raise ValueError(f"a stripe holds 1..{1 << MAX_DEPTH} fragments, not {n}")
    depth = max(1, (n - 1).bit_length())
    level = [_leaf(f) for f in fragments] + [_EMPTY] * ((1 << depth) - n)
    paths: list[list[bytes]] = [[] for _ in range(n)]
    for _ in range(depth):
        for i in range(n):
            pos = i >> len(paths[i])
            paths[i].append(level[pos ^ 1])
        level = [_node(level[j], level[j + 1]) for j in range(0, len(level), 2)]
    return level[0], [bytes([depth]) + b"".join(p) for p in paths]


def shard_id(root: bytes, index: int) -> str:
    """The id ``<root hex>.<index>`` a shard is stored under."""
    return f"{root.hex()}.{index}"


def parse_shard_id(text: str) -> tuple[bytes, int]:
    """Split a shard id into ``(root, index)``.

    Raises:
        ShardProofError: not 64 lowercase hex digits, a dot and an index < 256.
    """
    m = SHARD_ID_RE.fullmatch(text)
    if m is None or int(m.group(2)) >= 1 << MAX_DEPTH:
        raise ShardProofError(f"bad shard id {text[:80]!r}: want <64 hex>.<index 0-255>")
    return bytes.fromhex(m.group(1)), int(m.group(2))


def verify_shard(root: bytes, index: int, body: bytes | memoryview) -> memoryview:
    """Check that ``body`` is fragment ``index`` of the stripe named ``root``.

    Returns:
        A view of the fragment inside ``body`` (no copy).

    Raises:
        ShardProofError: truncated body, bad depth, or the proof does not lead to ``root``.
    """
    view = memoryview(body)
    if len(view) < 1:
        raise ShardProofError("empty shard body")
    depth = view[0]
    if not 1 <= depth <= MAX_DEPTH or index >= 1 << depth:
        raise ShardProofError(f"shard proof depth {depth} does not fit index {index}")
    start = 1 + 32 * depth
    if len(view) <= start:
        raise ShardProofError(f"shard body of {len(view)} bytes is shorter than its proof")
    h = _leaf(view[start:])
    pos = index
    for level in range(depth):
        sibling = bytes(view[1 + 32 * level: 1 + 32 * (level + 1)])
        h = _node(sibling, h) if pos & 1 else _node(h, sibling)
        pos >>= 1
    if h != root:
        raise ShardProofError(f"shard {index} does not match stripe root {root.hex()[:16]}…")
    return view[start:]

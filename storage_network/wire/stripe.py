"""Stripes, shard ids and the proof each shard carries.

A chunk is compressed and erasure-coded into a *stripe* of n = k + m
fragments.  The stripe is named by its *root*: a Merkle root over the n
fragments, so a manifest needs 32 bytes per chunk whatever n is, and every
single shard can still be checked on its own.

Two levels of Merkle tree, both padded with 32 zero bytes up to a power of
two, both with inner node = SHA-256(0x01 || left || right):

* the *block tree* of one fragment: the fragment is cut into blocks of
  :data:`BLOCK_SIZE` (4096) bytes, the last one possibly shorter (an empty
  fragment is one empty block); block leaf = SHA-256(0x00 || block).  With
  one block the block root is that leaf (depth 0).
* the *stripe tree*: leaf i = SHA-256(0x02 || u64 big-endian length of
  fragment i || block root of fragment i); depth at least 1.

The block tree lets a node prove it holds a fragment by sending a few
blocks with their paths instead of the whole fragment (see
:mod:`storage_network.wire.proofs`); the fragment length in the leaf fixes the
block count, so a node cannot choose which blocks it is asked for.

A shard is stored under the id ``<root hex>.<index>``.  Its body comes in two
formats, told apart by the high bit of its first byte; both stay readable::

    format 1:  u8 depth        | depth x 32-byte sibling hashes | fragment
    format 2:  u8 0x80 | depth | depth x 32-byte sibling hashes
               | 32-byte block root of the fragment | fragment

(siblings leaf level first; ``depth`` = log2(W), W the stripe tree's width).
Format 1's stripe leaf is the one above; format 2's is
SHA-256(0x03 || u64 BE length || block root || BLAKE3-256(fragment)), so a
reader checks a fragment with one BLAKE3 pass (about 3x faster than SHA-256
here, and no per-block hashing) and the carried block root, while a node's
proof of storage still walks the block tree to that block root.  The two
leaves are domain-separated (0x02 and 0x03), so a body of one format can
never pass for a stripe written in the other.  Writers make format 2
(:data:`FAST`); repair re-encodes a stripe in the format its root was made
with.  A node checks a body against its id on write, the block root of a
format-2 body included (:func:`verify_shard` with ``check_blocks``); a
reader checks it again on read.  The fragment is the pyeclib fragment (its
own 80-byte header included).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from blake3 import blake3

from storage_network.errors import ShardProofError

ROOT_BYTES = 32
SHARD_ID_RE = re.compile(r"\A([0-9a-f]{64})\.(0|[1-9][0-9]{0,2})\Z")
MAX_DEPTH = 8  # at most 256 shards per stripe
BLOCK_SIZE = 4096
FAST = 0x80
"""Flag in a shard body's first byte: format 2 (block root carried, BLAKE3 leaf)."""
_EMPTY = bytes(32)
_BLOCK_PREFIX = hashlib.sha256(b"\x00")
_sha256 = hashlib.sha256

Buffer = bytes | bytearray | memoryview


def block_leaf(block: Buffer) -> bytes:
    """Leaf hash of one block: SHA-256(0x00 || block)."""
    h = _BLOCK_PREFIX.copy()
    h.update(block)
    return h.digest()


def inner_node(left: bytes, right: bytes) -> bytes:
    """Inner node hash of both trees: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def block_count(length: int) -> int:
    """Blocks of a fragment of ``length`` bytes (an empty fragment is one empty block)."""
    return max(1, -(-length // BLOCK_SIZE))


def block_depth(length: int) -> int:
    """Depth of the block tree of a fragment of ``length`` bytes (0 for one block)."""
    return (block_count(length) - 1).bit_length()


def block_leaves(fragment: Buffer) -> list[bytes]:
    """The leaf hash of every block of ``fragment``, in order."""
    view = memoryview(fragment)
    if len(view) == 0:
        return [block_leaf(b"")]
    return [block_leaf(view[i:i + BLOCK_SIZE]) for i in range(0, len(view), BLOCK_SIZE)]


def block_levels(fragment: Buffer) -> list[list[bytes]]:
    """Every level of the block tree, leaves (padded) first, root (one hash) last."""
    level = block_leaves(fragment)
    level += [_EMPTY] * ((1 << (len(level) - 1).bit_length()) - len(level))
    levels = [level]
    while len(level) > 1:
        level = [inner_node(level[j], level[j + 1]) for j in range(0, len(level), 2)]
        levels.append(level)
    return levels


def block_root(fragment: Buffer) -> bytes:
    """Root of the block tree of ``fragment``."""
    level = block_leaves(fragment)
    if len(level) & (len(level) - 1):
        level += [_EMPTY] * ((1 << (len(level) - 1).bit_length()) - len(level))
    while len(level) > 1:
        level = [inner_node(level[j], level[j + 1]) for j in range(0, len(level), 2)]
    return level[0]


def fragment_leaf(length: int, root_of_blocks: bytes) -> bytes:
    """Stripe-tree leaf of a format-1 fragment: SHA-256(0x02 || u64 BE length || block root)."""
    return _sha256(b"\x02" + length.to_bytes(8, "big") + root_of_blocks).digest()


def content_hash(fragment: Buffer) -> bytes:
    """BLAKE3-256 of a whole fragment (format 2's content hash)."""
    return blake3(fragment).digest()


def fast_leaf(length: int, root_of_blocks: bytes, content: bytes) -> bytes:
    """Stripe-tree leaf of a format-2 fragment:
    SHA-256(0x03 || u64 BE length || block root || BLAKE3-256(fragment))."""
    return _sha256(b"\x03" + length.to_bytes(8, "big") + root_of_blocks + content).digest()


def climb(leaf: bytes, index: int, siblings: Sequence[Buffer]) -> bytes:
    """The root reached from ``leaf`` at position ``index`` with ``siblings`` (leaf level first)."""
    h = leaf
    for sibling in siblings:
        s = bytes(sibling)
        h = inner_node(s, h) if index & 1 else inner_node(h, s)
        index >>= 1
    return h


def build_stripe(fragments: Sequence[bytes], fast: bool = True) -> tuple[bytes, list[bytes]]:
    """Build the tree over ``fragments``.

    Args:
        fast: make format-2 shard bodies (the default), else format 1.

    Returns:
        ``(root, proofs)``: the 32-byte root and, per fragment, the proof
        prefix (the first byte, the sibling hashes and, in format 2, the
        block root) that goes before it in its shard body.

    Raises:
        ValueError: no fragments, or more than 2**MAX_DEPTH.
    """
    n = len(fragments)
    if not 0 < n <= 1 << MAX_DEPTH:
        raise ValueError(f"a stripe holds 1..{1 << MAX_DEPTH} fragments, not {n}")
    depth = max(1, (n - 1).bit_length())
    roots = [block_root(f) for f in fragments]
    level = ([fast_leaf(len(f), r, content_hash(f)) for f, r in zip(fragments, roots, strict=True)]
             if fast else [fragment_leaf(len(f), r) for f, r in zip(fragments, roots, strict=True)])
    level += [_EMPTY] * ((1 << depth) - n)
    paths: list[list[bytes]] = [[] for _ in range(n)]
    for _ in range(depth):
        for i in range(n):
            pos = i >> len(paths[i])
            paths[i].append(level[pos ^ 1])
        level = [inner_node(level[j], level[j + 1]) for j in range(0, len(level), 2)]
    if fast:
        return level[0], [bytes([FAST | depth]) + b"".join(p) + r
                          for p, r in zip(paths, roots, strict=True)]
    return level[0], [bytes([depth]) + b"".join(p) for p in paths]


FRAGMENT_OVERHEAD = 80 + 64
"""pyeclib's fragment header (80 bytes) and alignment padding (at most 64 here)."""


def max_shard_bytes(stored_size: int, k: int) -> int:
    """The largest body a shard of a stripe of a ``stored_size``-byte frame coded
    k-of-n can have, bytes: the stripe path at its deepest, pyeclib's header
    and padding, a carried block root, and the frame's k-th part.  Reads cap
    every shard with it."""
    return 1 + 32 * (MAX_DEPTH + 1) + FRAGMENT_OVERHEAD + -(-stored_size // max(1, k))


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


@dataclass(frozen=True)
class ShardBody:
    """The parts of a shard body, as views into it (see the module docstring).

    ``block_root`` is None in format 1 (the block root is then computed)."""

    depth: int
    siblings: memoryview
    block_root: memoryview | None
    fragment: memoryview

    def path(self) -> list[memoryview]:
        """The stripe path: ``depth`` sibling hashes, leaf level first."""
        return [self.siblings[32 * i:32 * (i + 1)] for i in range(self.depth)]


def split_body(index: int, body: Buffer) -> ShardBody:
    """Split a shard body (either format) into its parts.

    Raises:
        ShardProofError: empty or truncated body, or a depth that does not fit ``index``.
    """
    view = memoryview(body)
    if len(view) < 1:
        raise ShardProofError("empty shard body")
    fast = view[0] & FAST
    depth = view[0] & ~FAST
    if not 1 <= depth <= MAX_DEPTH or index >= 1 << depth:
        raise ShardProofError(f"shard proof depth {depth}{' (format 2)' if fast else ''} "
                              f"does not fit index {index}")
    start = 1 + 32 * depth + (32 if fast else 0)
    if len(view) <= start:
        raise ShardProofError(f"shard body of {len(view)} bytes is shorter than its proof")
    return ShardBody(depth, view[1:1 + 32 * depth], view[start - 32:start] if fast else None,
                     view[start:])


def verify_shard(root: bytes, index: int, body: Buffer, *, check_blocks: bool = False
                 ) -> memoryview:
    """Check that ``body`` is fragment ``index`` of the stripe named ``root``.

    A format-2 body is checked by its BLAKE3 content hash and its carried block
    root; ``check_blocks`` (what a node does on write) also recomputes the
    block root from the fragment, so a writer cannot store a block root its
    fragment does not have (which would fail every later proof of storage).

    Returns:
        A view of the fragment inside ``body`` (no copy).

    Raises:
        ShardProofError: truncated body, bad depth, a carried block root that is
            not the fragment's, or the proof does not lead to ``root``.
    """
    parts = split_body(index, body)
    fragment = parts.fragment
    if parts.block_root is None:
        leaf = fragment_leaf(len(fragment), block_root(fragment))
    else:
        carried = bytes(parts.block_root)
        if check_blocks and block_root(fragment) != carried:
            raise ShardProofError(f"shard {index}: the block root it carries is not its "
                                  "fragment's")
        leaf = fast_leaf(len(fragment), carried, content_hash(fragment))
    if climb(leaf, index, parts.path()) != root:
        raise ShardProofError(f"shard {index} does not match stripe root {root.hex()[:16]}…")
    return fragment

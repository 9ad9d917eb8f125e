"""Proofs of storage: a challenge a node cannot pass without a shard's bytes.

The auditor sends ``POST /proofs`` with ``{"nonce": hex, "ids": [shard id, ...]}``
(nonce: 16 to 64 random bytes, fresh per request; at most
:data:`MAX_IDS` ids).  For every listed shard the node reads the whole shard
and answers :data:`CHALLENGES_PER_SHARD` blocks of the fragment's block tree
(see :mod:`storage_network.wire.stripe`) chosen by :func:`challenge_blocks` from
the nonce and the shard id, so the node cannot choose them and cannot have
prepared them.  Each block comes with its block-tree path; the entry also
carries the fragment length and the shard's stripe path, so the verifier
recomputes the stripe root, which is in the shard id, from the id alone.

Answer format (``application/octet-stream``), one entry per requested id,
in request order, nothing after the last::

    entry  = 0x00                               the node does not hold the shard
           | 0x01 u32 BE len | proof            len = bytes of proof
    proof  = u64 BE fragment length L
             u8 D | D x 32 stripe siblings      (the shard body's own prefix:
                                                 in format 2, D has bit 0x80 set
                                                 and the 32-byte block root follows)
             [format 2: 32-byte BLAKE3-256 content hash of the fragment]
             per challenged block, in ascending block order:
                 the block (4096 bytes; the last block of the fragment
                 is L - 4096 * (B - 1) bytes)
                 d x 32 block-tree siblings, leaf level first

with B = the fragment's block count (max(1, ceil(L / 4096))) and
d = ceil(log2(B)).  The verifier derives B, d and the challenged blocks from
L, hashes every block up its path to one block root, hashes the leaf
SHA-256(0x02 || L || block root) up the stripe path and compares with the
root in the id (format 2: the blocks must lead to the carried block root,
and the leaf is SHA-256(0x03 || L || block root || content hash); see
:mod:`storage_network.wire.stripe`).  L is bound into that leaf, so a node
cannot lie about it to change which blocks are asked for.

A proof costs about ``CHALLENGES_PER_SHARD * (4096 + 32 d) + 32 D + 14``
bytes per shard (8.6 KB for a 64 KiB fragment of a 6-shard stripe), and the
node reads the whole shard to compute the block paths.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from storage_network.errors import ShardProofError
from storage_network.wire.stripe import (
    BLOCK_SIZE,
    FAST,
    MAX_DEPTH,
    Buffer,
    block_count,
    block_depth,
    block_leaf,
    block_levels,
    climb,
    content_hash,
    fast_leaf,
    fragment_leaf,
    parse_shard_id,
)

CHALLENGES_PER_SHARD = 2
MAX_IDS = 1000
MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 64
ABSENT = 0
PRESENT = 1
_DOMAIN = b"nixshard-proof-v1"


class MalformedAnswerError(ShardProofError):
    """The answer as a whole cannot be parsed (truncated, bad status byte, trailing bytes)."""


def challenge_blocks(nonce: bytes, shard_id: str, blocks: int) -> list[int]:
    """The distinct block indices asked of ``shard_id``, ascending.

    Index j = int(SHA-256(domain || u8 len(nonce) || nonce || id || u32 BE j)[:8]) mod
    ``blocks``, for j < :data:`CHALLENGES_PER_SHARD`; repeats are dropped (a
    one-block fragment is asked for its one block).
    """
    if blocks < 1:
        raise ValueError(f"a fragment has at least one block, not {blocks}")
    base = hashlib.sha256(_DOMAIN + bytes([len(nonce)]) + nonce + shard_id.encode())
    picked = set()
    for counter in range(CHALLENGES_PER_SHARD):
        h = base.copy()
        h.update(counter.to_bytes(4, "big"))
        picked.add(int.from_bytes(h.digest()[:8], "big") % blocks)
    return sorted(picked)


def max_answer_bytes(count: int) -> int:
    """The largest well-formed answer to a challenge of ``count`` shards, bytes.

    Per entry: status and length (5), L (8), a stripe path (1 + 32 x 8), a
    block root and a content hash (64, format 2) and per challenged block 4096
    bytes plus a block path of at most 32 levels.
    """
    per_entry = (5 + 8 + 1 + 32 * MAX_DEPTH + 64
                 + CHALLENGES_PER_SHARD * (BLOCK_SIZE + 32 * 32))
    return max(1, count) * per_entry


def _block_length(length: int, index: int) -> int:
    blocks = block_count(length)
    return BLOCK_SIZE if index < blocks - 1 else length - BLOCK_SIZE * (blocks - 1)


def prove_shard(nonce: bytes, shard_id: str, body: Buffer) -> bytes:
    """The proof (without status and length) for the stored shard ``body``.

    Built from the bytes as stored, without checking them: a node whose
    copy rotted answers a proof that fails.  A body too short to hold its
    own stripe path is sent as it is (it cannot verify either).
    """
    view = memoryview(body)
    first = view[0] if len(view) else 0
    start = 1 + 32 * (first & ~FAST) + (32 if first & FAST else 0)
    if len(view) < start:
        return bytes(view)
    fragment = view[start:]
    length = len(fragment)
    levels = block_levels(fragment)
    parts = [length.to_bytes(8, "big"), bytes(view[:start])]
    if first & FAST:
        parts.append(content_hash(fragment))
    for index in challenge_blocks(nonce, shard_id, block_count(length)):
        parts.append(bytes(fragment[index * BLOCK_SIZE:(index + 1) * BLOCK_SIZE]))
        pos = index
        for level in levels[:-1]:
            parts.append(level[pos ^ 1])
            pos >>= 1
    return b"".join(parts)


def answer_entry(nonce: bytes, shard_id: str, body: Buffer | None) -> bytes:
    """One entry of the answer: absent (``body`` None) or present with its proof."""
    if body is None:
        return bytes([ABSENT])
    proof = prove_shard(nonce, shard_id, body)
    return bytes([PRESENT]) + len(proof).to_bytes(4, "big") + proof


def encode_answer(nonce: bytes, shards: Sequence[tuple[str, Buffer | None]]) -> bytes:
    """The whole answer for ``(shard id, stored body or None)`` pairs, in order."""
    return b"".join(answer_entry(nonce, sid, body) for sid, body in shards)


def split_answer(shard_ids: Sequence[str], answer: Buffer) -> list[memoryview | None]:
    """Cut an answer into one proof per id (None: the node says absent).

    Raises:
        MalformedAnswerError: truncated, a status byte other than 0 or 1, or
            bytes after the last entry.
    """
    view = memoryview(answer)
    pos = 0
    out: list[memoryview | None] = []
    for n, sid in enumerate(shard_ids):
        if pos >= len(view):
            raise MalformedAnswerError(
                f"answer truncated after {n} of {len(shard_ids)} entries ({len(view)} bytes)")
        status = view[pos]
        pos += 1
        if status == ABSENT:
            out.append(None)
            continue
        if status != PRESENT:
            raise MalformedAnswerError(f"entry {n} ({sid}): status byte {status}, want 0 or 1")
        if pos + 4 > len(view):
            raise MalformedAnswerError(f"answer truncated in the length of entry {n} ({sid})")
        size = int.from_bytes(view[pos:pos + 4], "big")
        pos += 4
        if pos + size > len(view):
            raise MalformedAnswerError(
                f"answer truncated in entry {n} ({sid}): {len(view) - pos} of {size} bytes")
        out.append(view[pos:pos + size])
        pos += size
    if pos != len(view):
        raise MalformedAnswerError(
            f"{len(view) - pos} bytes after the last of {len(shard_ids)} entries")
    return out


def verify_proof(nonce: bytes, shard_id: str, proof: Buffer) -> None:
    """Check one shard's proof against the stripe root in ``shard_id``.

    Raises:
        ShardProofError: bad id, truncated or overlong proof, bad depth, or a
            block or path that does not lead to the root.
    """
    root, index = parse_shard_id(shard_id)
    view = memoryview(proof)
    if len(view) < 9:
        raise ShardProofError(f"shard {shard_id}: proof of {len(view)} bytes is truncated "
                              "before its stripe path")
    length = int.from_bytes(view[:8], "big")
    fast = bool(view[8] & FAST)
    depth = view[8] & ~FAST
    if not 1 <= depth <= MAX_DEPTH or index >= 1 << depth:
        raise ShardProofError(f"shard {shard_id}: stripe path depth {depth} does not fit "
                              f"index {index}")
    pos = 9 + 32 * depth + (64 if fast else 0)
    if len(view) < pos:
        raise ShardProofError(f"shard {shard_id}: proof truncated in its stripe path")
    stripe_path = [view[9 + 32 * i:9 + 32 * (i + 1)] for i in range(depth)]
    blocks, d = block_count(length), block_depth(length)
    found: bytes | None = None
    for index_b in challenge_blocks(nonce, shard_id, blocks):
        size = _block_length(length, index_b)
        need = size + 32 * d
        if len(view) < pos + need:
            raise ShardProofError(f"shard {shard_id}: proof truncated in block {index_b} "
                                  f"(fragment of {length} bytes claimed)")
        leaf = block_leaf(view[pos:pos + size])
        path = [view[pos + size + 32 * i:pos + size + 32 * (i + 1)] for i in range(d)]
        pos += need
        got = climb(leaf, index_b, path)
        if found is None:
            found = got
        elif got != found:
            raise ShardProofError(f"shard {shard_id}: block {index_b} does not match the "
                                  "other challenged blocks")
    if pos != len(view):
        raise ShardProofError(f"shard {shard_id}: {len(view) - pos} unexpected bytes "
                              "after the last block")
    assert found is not None
    if fast:
        carried = bytes(view[9 + 32 * depth:9 + 32 * depth + 32])
        if found != carried:
            raise ShardProofError(f"shard {shard_id}: challenged blocks do not match the "
                                  "block root the shard carries")
        leaf = fast_leaf(length, carried, bytes(view[41 + 32 * depth:73 + 32 * depth]))
    else:
        leaf = fragment_leaf(length, found)
    if climb(leaf, index, stripe_path) != root:
        raise ShardProofError(f"shard {shard_id}: challenged blocks do not match stripe root "
                              f"{root.hex()[:16]}…")


@dataclass(frozen=True)
class ShardOutcome:
    """What an answer says of one shard: absent, held (valid proof) or an invalid proof."""

    shard_id: str
    present: bool
    error: ShardProofError | None = None

    @property
    def held(self) -> bool:
        """True when the node proved it holds the shard."""
        return self.present and self.error is None


def check_answer(nonce: bytes, shard_ids: Sequence[str], answer: Buffer) -> list[ShardOutcome]:
    """Verify every entry of an answer; one outcome per id, in order.

    A bad proof is reported in its outcome, not raised, so one bad shard
    does not hide the others.

    Raises:
        MalformedAnswerError: the answer cannot be cut into entries.
    """
    outcomes = []
    for sid, proof in zip(shard_ids, split_answer(shard_ids, answer), strict=True):
        if proof is None:
            outcomes.append(ShardOutcome(sid, False))
            continue
        try:
            verify_proof(nonce, sid, proof)
        except ShardProofError as exc:
            outcomes.append(ShardOutcome(sid, True, exc))
        else:
            outcomes.append(ShardOutcome(sid, True))
    return outcomes


def verify_answer(nonce: bytes, shard_ids: Sequence[str], answer: Buffer) -> set[str]:
    """The ids the node proved it holds; absent ids are simply left out.

    Raises:
        ShardProofError: any proof fails (the first failure), or the answer is malformed
            (:class:`MalformedAnswerError`).
    """
    held = set()
    for outcome in check_answer(nonce, shard_ids, answer):
        if outcome.error is not None:
            raise outcome.error
        if outcome.present:
            held.add(outcome.shard_id)
    return held

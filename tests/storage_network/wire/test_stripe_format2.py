"""Shard body format 2 (storage_network.wire.stripe): BLAKE3 content hash, carried
block root; format 1 stays readable, and neither passes for the other."""

from __future__ import annotations

import hashlib
import random

import pytest
from blake3 import blake3

from storage_network.coding.codec import StripeCodec
from storage_network.errors import ShardProofError
from storage_network.wire.proofs import check_answer, encode_answer, prove_shard, verify_proof
from storage_network.wire.stripe import (
    FAST,
    block_root,
    build_stripe,
    climb,
    shard_id,
    split_body,
    verify_shard,
)
from tests.storage_network.wire.test_stripe import reference_block_root, reference_tree
from tests.support.shards import flip_bit

NONCE = bytes(range(32))


def fragments(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed * 1000 + n)
    return [rng.randbytes(rng.randrange(1, 20_000)) for _ in range(n)]


def reference_root(frags: list[bytes]) -> bytes:
    """Format 2's stripe root, computed independently of the module."""
    leaves = [hashlib.sha256(b"\x03" + len(f).to_bytes(8, "big") + reference_block_root(f)
                             + blake3(f).digest()).digest() for f in frags]
    return reference_tree(leaves, 2)


@pytest.mark.parametrize("n", [1, 2, 6, 16])
def test_every_format_2_shard_verifies(n: int) -> None:
    frags = fragments(n)
    root, proofs = build_stripe(frags)
    assert root == reference_root(frags)
    depth = max(1, (n - 1).bit_length())
    for i, (proof, frag) in enumerate(zip(proofs, frags, strict=True)):
        body = proof + frag
        assert body[0] == FAST | depth
        assert len(body) == 1 + 32 * depth + 32 + len(frag)
        assert bytes(body[1 + 32 * depth:33 + 32 * depth]) == reference_block_root(frag)
        assert bytes(verify_shard(root, i, body)) == frag
        assert bytes(verify_shard(root, i, body, check_blocks=True)) == frag


def test_any_flipped_bit_fails() -> None:
    frags = fragments(6)
    root, proofs = build_stripe(frags)
    body = proofs[3] + frags[3]
    for pos in range(0, len(body), 97):  # depth byte, siblings, block root, fragment
        with pytest.raises(ShardProofError):
            verify_shard(root, 3, flip_bit(body, pos))


def test_neither_format_passes_for_the_other() -> None:
    frags = fragments(6)
    root2, proofs2 = build_stripe(frags)
    root1, proofs1 = build_stripe(frags, fast=False)
    assert root1 != root2
    with pytest.raises(ShardProofError, match="does not match stripe root"):
        verify_shard(root2, 0, proofs1[0] + frags[0])
    with pytest.raises(ShardProofError, match="does not match stripe root"):
        verify_shard(root1, 0, proofs2[0] + frags[0])


def test_a_node_refuses_a_block_root_its_fragment_does_not_have() -> None:
    """A writer that names a wrong block root in a consistent stripe would have every
    proof of storage fail later: readers accept the bytes (content hash), the node's
    write check does not."""
    frags = fragments(2)
    wrong = bytes(32)
    leaves = [hashlib.sha256(b"\x03" + len(f).to_bytes(8, "big") + wrong
                             + blake3(f).digest()).digest() for f in frags]
    root = hashlib.sha256(b"\x01" + leaves[0] + leaves[1]).digest()
    body = bytes([FAST | 1]) + leaves[1] + wrong + frags[0]
    assert climb(leaves[0], 0, [leaves[1]]) == root
    assert bytes(verify_shard(root, 0, body)) == frags[0]
    with pytest.raises(ShardProofError, match="block root it carries is not its fragment's"):
        verify_shard(root, 0, body, check_blocks=True)
    # and its proof of storage fails, whatever the node does
    sid = shard_id(root, 0)
    outcome, = check_answer(NONCE, [sid], encode_answer(NONCE, [(sid, body)]))
    assert not outcome.held


def test_proof_tampering_with_the_content_hash_or_block_root_fails() -> None:
    frags = [random.Random(3).randbytes(9 * 4096 + 5) for _ in range(6)]
    root, proofs = build_stripe(frags)
    sid = shard_id(root, 4)
    proof = prove_shard(NONCE, sid, proofs[4] + frags[4])
    verify_proof(NONCE, sid, proof)
    depth = 3
    carried = 9 + 32 * depth
    for pos in (carried, carried + 31, carried + 32, carried + 63):
        with pytest.raises(ShardProofError):
            verify_proof(NONCE, sid, flip_bit(proof, pos))


def test_repair_reencodes_in_the_format_the_stripe_was_written_in() -> None:
    codec = StripeCodec(4, 2)
    frame = random.Random(4).randbytes(30_000)
    root2, bodies2 = codec.encode_frame(frame)
    assert all(b[0] & FAST for b in bodies2)
    fragments_ = [split_body(i, b).fragment for i, b in enumerate(bodies2)]
    root1, proofs1 = build_stripe([bytes(f) for f in fragments_], fast=False)
    assert codec.reencode(frame, root2) == (root2, bodies2)
    again1, bodies1 = codec.reencode(frame, root1)
    assert again1 == root1
    assert [bytes(p) + bytes(f) for p, f in zip(proofs1, fragments_, strict=True)] == \
        list(bodies1)
    other, _ = codec.reencode(frame, bytes(32))
    assert other != bytes(32)
    assert block_root(fragments_[0]) == bytes(split_body(0, bodies2[0]).block_root or b"")

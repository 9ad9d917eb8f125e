"""Stripe trees and shard body format 1 (storage_network.wire.stripe).

Format 2 is tested in test_stripe_format2.py.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from storage_network.errors import ShardProofError
from storage_network.wire.stripe import (
    BLOCK_SIZE,
    MAX_DEPTH,
    block_count,
    block_depth,
    block_levels,
    block_root,
    build_stripe,
    parse_shard_id,
    shard_id,
    verify_shard,
)
from tests.support.shards import flip_bit

ROOT_HEX = "0123456789abcdef" * 4


def fragments(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed * 1000 + n)
    return [rng.randbytes(rng.randrange(1, 300)) for _ in range(n)]


def bodies(n: int) -> tuple[bytes, list[bytes], list[bytes]]:
    frags = fragments(n)
    root, proofs = build_stripe(frags, fast=False)
    return root, frags, [p + f for p, f in zip(proofs, frags, strict=True)]


def reference_tree(leaves: list[bytes], min_width: int) -> bytes:
    width = 1
    while width < len(leaves) or width < min_width:
        width *= 2
    level = leaves + [bytes(32)] * (width - len(leaves))
    while len(level) > 1:
        level = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
                 for i in range(0, len(level), 2)]
    return level[0]


def reference_block_root(frag: bytes) -> bytes:
    blocks = [frag[i:i + 4096] for i in range(0, len(frag), 4096)] or [b""]
    return reference_tree([hashlib.sha256(b"\x00" + b).digest() for b in blocks], 1)


def reference_root(frags: list[bytes]) -> bytes:
    """The trees of the module docstring, computed independently."""
    leaves = [hashlib.sha256(b"\x02" + len(f).to_bytes(8, "big")
                             + reference_block_root(f)).digest() for f in frags]
    return reference_tree(leaves, 2)


@pytest.mark.parametrize("n", [1, 2, 3, 6, 16, 40])
def test_every_shard_verifies(n: int) -> None:
    root, frags, shard_bodies = bodies(n)
    assert len(root) == 32
    assert root == reference_root(frags)
    depth = max(1, (n - 1).bit_length())
    for i, body in enumerate(shard_bodies):
        assert body[0] == depth
        assert len(body) == 1 + 32 * depth + len(frags[i])
        view = verify_shard(root, i, body)
        assert bytes(view) == frags[i]


@pytest.mark.parametrize("n", [1, 2, 3, 6, 16, 40])
def test_flipped_fragment_byte_fails(n: int) -> None:
    root, _, shard_bodies = bodies(n)
    for i, body in enumerate(shard_bodies):
        with pytest.raises(ShardProofError, match=f"shard {i} does not match stripe root"):
            verify_shard(root, i, flip_bit(body, len(body) - 1))


@pytest.mark.parametrize("n", [1, 2, 3, 6, 16, 40])
def test_flipped_proof_byte_fails(n: int) -> None:
    root, _, shard_bodies = bodies(n)
    depth = shard_bodies[0][0]
    for i, body in enumerate(shard_bodies):
        for level in range(depth):
            with pytest.raises(ShardProofError, match="does not match stripe root"):
                verify_shard(root, i, flip_bit(body, 1 + 32 * level + 5))


@pytest.mark.parametrize("n", [2, 3, 6, 16, 40])
def test_wrong_index_fails(n: int) -> None:
    root, _, shard_bodies = bodies(n)
    for i, body in enumerate(shard_bodies):
        other = (i + 1) % n
        with pytest.raises(ShardProofError, match=f"shard {other} does not match"):
            verify_shard(root, other, body)


def test_padding_index_of_a_one_shard_stripe_fails() -> None:
    root, _, shard_bodies = bodies(1)
    with pytest.raises(ShardProofError, match="shard 1 does not match"):
        verify_shard(root, 1, shard_bodies[0])


def test_other_root_fails() -> None:
    root, _, shard_bodies = bodies(6)
    other_root, _ = build_stripe(fragments(6, seed=1), fast=False)
    assert other_root != root
    with pytest.raises(ShardProofError, match="does not match stripe root"):
        verify_shard(other_root, 0, shard_bodies[0])


def test_empty_body() -> None:
    root, _, _ = bodies(6)
    with pytest.raises(ShardProofError, match="empty shard body"):
        verify_shard(root, 0, b"")


@pytest.mark.parametrize("keep", [1, 10, 1 + 32 * 3])
def test_truncated_body(keep: int) -> None:
    root, _, shard_bodies = bodies(6)  # depth 3
    with pytest.raises(ShardProofError, match=f"shard body of {keep} bytes is shorter"):
        verify_shard(root, 0, shard_bodies[0][:keep])


def test_truncated_fragment_fails() -> None:
    root, _, shard_bodies = bodies(6)
    with pytest.raises(ShardProofError, match="does not match stripe root"):
        verify_shard(root, 2, shard_bodies[2][:-1])


@pytest.mark.parametrize("depth", [0, MAX_DEPTH + 1, 255])
def test_bad_depth(depth: int) -> None:
    root, _, shard_bodies = bodies(6)
    body = bytes([depth]) + shard_bodies[0][1:]
    shown = f"{depth & 0x7F} \\(format 2\\)" if depth & 0x80 else str(depth)
    with pytest.raises(ShardProofError, match=f"shard proof depth {shown} does not fit"):
        verify_shard(root, 0, body)


def test_depth_too_small_for_index() -> None:
    root, _, shard_bodies = bodies(6)
    body = bytes([2]) + shard_bodies[5][1:]
    with pytest.raises(ShardProofError, match="depth 2 does not fit index 5"):
        verify_shard(root, 5, body)


def test_build_stripe_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="not 0"):
        build_stripe([])
    with pytest.raises(ValueError, match="not 257"):
        build_stripe([b"x"] * 257)


def test_shard_id_round_trip() -> None:
    root = bytes(range(32))
    for index in (0, 7, 39, 255):
        text = shard_id(root, index)
        assert text == f"{root.hex()}.{index}"
        assert parse_shard_id(text) == (root, index)


@pytest.mark.parametrize("text", [
    ROOT_HEX.upper() + ".0",               # uppercase hex
    ROOT_HEX[:-2] + ".0",                  # short hex
    ROOT_HEX + "00.0",                     # long hex
    ROOT_HEX + ".256",                     # index 256
    ROOT_HEX + ".1000",                    # index of four digits
    "../x",                                # path traversal
    ROOT_HEX + "/../x.0",
    ROOT_HEX + ".01",                      # leading zero
    ROOT_HEX + ".-1",
    ROOT_HEX + ".",
    ROOT_HEX,
    "",
])
def test_parse_shard_id_rejects(text: str) -> None:
    with pytest.raises(ShardProofError, match=r"bad shard id .*want <64 hex>\.<index 0-255>"):
        parse_shard_id(text)


def test_parse_shard_id_rejects_trailing_newline() -> None:
    with pytest.raises(ShardProofError, match="bad shard id"):
        parse_shard_id(ROOT_HEX + ".0\n")


@pytest.mark.parametrize("length", [0, 1, 4095, 4096, 4097, 8192, 3 * 4096 + 17, 16 * 4096,
                                    17 * 4096 - 1])
def test_block_tree_matches_reference(length: int) -> None:
    frag = random.Random(length).randbytes(length)
    assert block_count(length) == max(1, -(-length // BLOCK_SIZE))
    assert block_root(frag) == reference_block_root(frag)
    levels = block_levels(frag)
    assert levels[-1] == [block_root(frag)]
    assert len(levels) == block_depth(length) + 1
    assert len(levels[0]) == 1 << block_depth(length)


def test_one_block_fragment_root_is_its_leaf() -> None:
    frag = b"x" * 100
    assert block_depth(100) == 0
    assert block_root(frag) == hashlib.sha256(b"\x00" + frag).digest()


@pytest.mark.parametrize("lengths", [[1, 4096, 4097], [5000, 12288, 99999, 3],
                                     [65536] * 6, [4096 * 5 + 1] * 3])
def test_odd_fragment_lengths_verify(lengths: list[int]) -> None:
    rng = random.Random(sum(lengths))
    frags = [rng.randbytes(n) for n in lengths]
    root, proofs = build_stripe(frags, fast=False)
    assert root == reference_root(frags)
    for i, (proof, frag) in enumerate(zip(proofs, frags, strict=True)):
        assert bytes(verify_shard(root, i, proof + frag)) == frag


def test_fragment_length_is_bound_into_the_leaf() -> None:
    """Two fragments with the same block root but different lengths differ in the stripe."""
    frag = bytes(4096)
    root, proofs = build_stripe([frag, b"y"], fast=False)
    # the same bytes with one block fewer / one more trailing byte do not verify
    for other in (frag[:-1], frag + b"\x00"):
        with pytest.raises(ShardProofError, match="shard 0 does not match"):
            verify_shard(root, 0, proofs[0] + other)


def test_flipped_byte_in_any_block_fails() -> None:
    frags = [random.Random(i).randbytes(5 * 4096 + 7) for i in range(3)]
    root, proofs = build_stripe(frags, fast=False)
    body = proofs[1] + frags[1]
    start = len(proofs[1])
    for pos in (0, 4095, 4096, 3 * 4096 + 5, len(frags[1]) - 1):
        with pytest.raises(ShardProofError, match="shard 1 does not match"):
            verify_shard(root, 1, flip_bit(body, start + pos))

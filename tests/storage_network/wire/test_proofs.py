"""Storage challenges (storage_network.wire.proofs): derivation, answers, and every tampering."""

from __future__ import annotations

import random

import pytest

from storage_network.errors import ShardProofError
from storage_network.wire.proofs import (
    CHALLENGES_PER_SHARD,
    MalformedAnswerError,
    answer_entry,
    challenge_blocks,
    check_answer,
    encode_answer,
    prove_shard,
    split_answer,
    verify_answer,
    verify_proof,
)
from storage_network.wire.stripe import BLOCK_SIZE, block_count, build_stripe, shard_id
from tests.support.shards import flip_bit

NONCE = bytes(range(32))
OTHER_NONCE = bytes(range(1, 33))


def make_stripe(lengths: list[int], seed: int = 0, fast: bool = True
                ) -> list[tuple[str, bytes]]:
    """Shards ``(id, body)`` of one stripe over random fragments of the given lengths
    (shard body format 2, or 1 with ``fast=False``)."""
    rng = random.Random(seed)
    frags = [rng.randbytes(n) for n in lengths]
    root, proofs = build_stripe(frags, fast)
    return [(shard_id(root, i), p + f) for i, (p, f) in enumerate(zip(proofs, frags,
                                                                      strict=True))]


def with_distinct_blocks(sid: str, blocks: int) -> bytes:
    """A nonce that challenges CHALLENGES_PER_SHARD distinct blocks of ``sid``."""
    for i in range(1000):
        nonce = i.to_bytes(16, "big")
        if len(challenge_blocks(nonce, sid, blocks)) == CHALLENGES_PER_SHARD:
            return nonce
    raise AssertionError("no nonce found")


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("lengths", [
    [100, 100, 100],                 # one block each
    [4096] * 6,                      # exactly one full block
    [4097, 9000, 12289, 1, 65536, 70001],
    [20 * 4096 + 3] * 16,
])
def test_round_trip(lengths: list[int], fast: bool) -> None:
    shards = make_stripe(lengths, fast=fast)
    ids = [sid for sid, _ in shards]
    answer = encode_answer(NONCE, shards)
    assert verify_answer(NONCE, ids, answer) == set(ids)
    outcomes = check_answer(NONCE, ids, answer)
    assert [o.shard_id for o in outcomes] == ids
    assert all(o.held for o in outcomes)


def test_absent_and_present_mixed() -> None:
    shards = make_stripe([5000] * 4)
    pairs = [(sid, body if i % 2 else None) for i, (sid, body) in enumerate(shards)]
    ids = [sid for sid, _ in shards]
    answer = encode_answer(NONCE, pairs)
    assert verify_answer(NONCE, ids, answer) == {ids[1], ids[3]}
    outcomes = check_answer(NONCE, ids, answer)
    assert [o.present for o in outcomes] == [False, True, False, True]
    assert answer_entry(NONCE, ids[0], None) == b"\x00"


def test_empty_request() -> None:
    assert encode_answer(NONCE, []) == b""
    assert verify_answer(NONCE, [], b"") == set()


@pytest.mark.parametrize("fast,extra", [(False, 0), (True, 64)])
def test_proof_size_of_a_64k_fragment(fast: bool, extra: int) -> None:
    shards = make_stripe([65536] * 6, fast=fast)  # 16 blocks (block depth 4), stripe depth 3
    sid, body = shards[2]
    nonce = with_distinct_blocks(sid, 16)
    entry = answer_entry(nonce, sid, body)
    # format 2 adds the carried block root and the content hash
    assert len(entry) == 1 + 4 + 8 + 1 + 3 * 32 + 2 * (4096 + 4 * 32) + extra == 8558 + extra


@pytest.mark.parametrize("fast,extra", [(False, 0), (True, 64)])
def test_one_block_fragment_is_asked_for_its_one_block(fast: bool, extra: int) -> None:
    shards = make_stripe([300, 300], fast=fast)
    sid, body = shards[0]
    for i in range(20):
        assert challenge_blocks(i.to_bytes(16, "big"), sid, 1) == [0]
    proof = prove_shard(NONCE, sid, body)
    assert len(proof) == 8 + 1 + 32 + extra + 300
    verify_proof(NONCE, sid, proof)


def test_challenges_depend_on_nonce_and_id() -> None:
    ids = [shard_id(bytes([i]) * 32, 0) for i in range(20)]
    blocks = 1000
    for sid in ids:
        picked = challenge_blocks(NONCE, sid, blocks)
        assert picked == sorted(set(picked)) and 1 <= len(picked) <= CHALLENGES_PER_SHARD
        assert all(0 <= b < blocks for b in picked)
        assert challenge_blocks(NONCE, sid, blocks) == picked  # deterministic
    by_id = {tuple(challenge_blocks(NONCE, sid, blocks)) for sid in ids}
    assert len(by_id) == len(ids)
    by_nonce = {tuple(challenge_blocks(i.to_bytes(16, "big"), ids[0], blocks))
                for i in range(20)}
    assert len(by_nonce) == 20
    # every block of a small fragment gets asked for under some nonce
    seen = set()
    for i in range(200):
        seen.update(challenge_blocks(i.to_bytes(16, "big"), ids[0], 5))
    assert seen == set(range(5))


def test_nonce_length_is_part_of_the_derivation() -> None:
    sid = shard_id(bytes(32), 3)
    a = challenge_blocks(b"\x01" * 16, sid, 1 << 40)
    b = challenge_blocks(b"\x01" * 17, sid, 1 << 40)
    assert a != b


def test_challenge_blocks_rejects_zero_blocks() -> None:
    with pytest.raises(ValueError, match="at least one block"):
        challenge_blocks(NONCE, shard_id(bytes(32), 0), 0)


def single_answer(length: int = 3 * 4096 + 123) -> tuple[str, bytes, bytes]:
    sid, body = make_stripe([length] * 6, seed=length)[4]
    nonce = with_distinct_blocks(sid, block_count(length))
    return sid, nonce, answer_entry(nonce, sid, body)


def test_every_flipped_byte_of_an_answer_is_caught() -> None:
    sid, nonce, answer = single_answer()
    assert verify_answer(nonce, [sid], answer) == {sid}
    for pos in range(len(answer)):
        with pytest.raises(ShardProofError):
            verify_answer(nonce, [sid], flip_bit(answer, pos))


def test_every_truncation_of_an_answer_is_caught() -> None:
    shards = make_stripe([6000] * 3)
    ids = [sid for sid, _ in shards]
    answer = encode_answer(NONCE, [shards[0], (ids[1], None), shards[2]])
    for keep in range(len(answer)):
        with pytest.raises(MalformedAnswerError, match="truncated"):
            split_answer(ids, answer[:keep])


def test_trailing_bytes_are_caught() -> None:
    sid, nonce, answer = single_answer()
    with pytest.raises(MalformedAnswerError, match="1 bytes after the last of 1 entries"):
        verify_answer(nonce, [sid], answer + b"\x00")


def test_bad_status_byte() -> None:
    sid, nonce, answer = single_answer()
    with pytest.raises(MalformedAnswerError, match=r"entry 0 .*status byte 2, want 0 or 1"):
        verify_answer(nonce, [sid], b"\x02" + answer[1:])


def test_error_messages_name_the_problem() -> None:
    sid, nonce, answer = single_answer()
    proof = answer[5:]
    with pytest.raises(ShardProofError, match="truncated before its stripe path"):
        verify_proof(nonce, sid, proof[:5])
    with pytest.raises(ShardProofError, match="stripe path depth 0 does not fit"):
        verify_proof(nonce, sid, proof[:8] + b"\x00" + proof[9:])
    with pytest.raises(ShardProofError, match="proof truncated in its stripe path"):
        verify_proof(nonce, sid, proof[:9 + 40])
    with pytest.raises(ShardProofError, match="proof truncated in block"):
        verify_proof(nonce, sid, proof[:-1])
    with pytest.raises(ShardProofError, match="unexpected bytes after the last block"):
        verify_proof(nonce, sid, proof + b"\x00")
    with pytest.raises(ShardProofError, match="challenged blocks do not match stripe root"):
        verify_proof(nonce, sid, flip_bit(proof, 10))  # a stripe-path sibling
    with pytest.raises(ShardProofError, match="does not match the other challenged blocks"):
        verify_proof(nonce, sid, flip_bit(proof, 200))  # first block's bytes
    with pytest.raises(ShardProofError, match="bad shard id"):
        verify_proof(nonce, "nonsense", proof)


def test_claimed_length_cannot_be_changed() -> None:
    sid, nonce, answer = single_answer()
    proof = bytearray(answer[5:])
    for claimed in (0, 1, 4096, 2 * 4096, 1 << 62):
        proof[:8] = claimed.to_bytes(8, "big")
        with pytest.raises(ShardProofError):
            verify_proof(nonce, sid, bytes(proof))


def test_answer_for_another_nonce_or_id_fails() -> None:
    shards = make_stripe([40 * 4096] * 6)
    (sid0, body0), (sid1, _) = shards[0], shards[1]
    answer = encode_answer(NONCE, [(sid0, body0)])
    assert challenge_blocks(NONCE, sid0, 40) != challenge_blocks(OTHER_NONCE, sid0, 40)
    with pytest.raises(ShardProofError):
        verify_answer(OTHER_NONCE, [sid0], answer)
    with pytest.raises(ShardProofError):
        verify_answer(NONCE, [sid1], answer)


@pytest.mark.parametrize("fast,why", [
    (False, "challenged blocks do not match stripe root"),
    (True, "challenged blocks do not match the block root the shard carries"),
])
def test_rotten_stored_shard_fails_even_outside_the_challenged_blocks(fast: bool,
                                                                       why: str) -> None:
    shards = make_stripe([10 * 4096] * 6, fast=fast)
    sid, body = shards[3]
    picked = challenge_blocks(NONCE, sid, 10)
    other = next(b for b in range(10) if b not in picked)
    prefix = len(body) - 10 * 4096
    rotten = flip_bit(body, prefix + other * BLOCK_SIZE + 7)
    outcome, = check_answer(NONCE, [sid], answer_entry(NONCE, sid, rotten))
    assert outcome.present and not outcome.held
    assert why in str(outcome.error)
    truncated = body[:-1]
    outcome, = check_answer(NONCE, [sid], answer_entry(NONCE, sid, truncated))
    assert outcome.error is not None


def test_body_shorter_than_its_own_path_gives_a_failing_proof() -> None:
    sid, body = make_stripe([500] * 6)[0]
    for broken in (body[:10], b""):
        outcome, = check_answer(NONCE, [sid], answer_entry(NONCE, sid, broken))
        assert outcome.present and outcome.error is not None


def test_one_bad_proof_does_not_hide_the_others() -> None:
    shards = make_stripe([9000] * 4)
    ids = [sid for sid, _ in shards]
    pairs: list[tuple[str, bytes | None]] = list(shards)
    pairs[1] = (ids[1], flip_bit(shards[1][1], len(shards[1][1]) - 1))
    outcomes = check_answer(NONCE, ids, encode_answer(NONCE, pairs))
    assert [o.held for o in outcomes] == [True, False, True, True]
    with pytest.raises(ShardProofError, match=ids[1]):
        verify_answer(NONCE, ids, encode_answer(NONCE, pairs))

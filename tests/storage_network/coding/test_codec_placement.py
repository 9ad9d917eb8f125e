"""Erasure codec (storage_network.coding.codec) and rendezvous placement
(storage_network.nodes.placement)."""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import replace

import pytest
import zstandard
from pyeclib.ec_iface import ECDriverError

from storage_network.coding.codec import StripeCodec
from storage_network.config import NodeInfo
from storage_network.errors import ChunkUnavailableError
from storage_network.nodes.placement import ranking, record_nodes, shard_nodes
from storage_network.wire.stripe import verify_shard

K, M = 4, 2


def chunk_bytes(seed: int, size: int = 50_000) -> bytes:
    rng = random.Random(seed)
    # half random, half repetitive: compressible but not trivially
    return rng.randbytes(size // 2) + bytes(rng.randrange(4) for _ in range(size // 2))


@pytest.fixture(scope="module")
def codec() -> StripeCodec:
    return StripeCodec(K, M)


def fragments_of(enc_bodies: tuple[bytes, ...], root: bytes) -> dict[int, bytes]:
    return {i: bytes(verify_shard(root, i, body)) for i, body in enumerate(enc_bodies)}


# --- codec --------------------------------------------------------------------------------


def test_encode_shape(codec: StripeCodec) -> None:
    chunk = chunk_bytes(1)
    enc = codec.encode(chunk)
    assert enc.ref.chunk_id == hashlib.sha256(chunk).digest()
    assert enc.ref.size == len(chunk)
    assert len(enc.bodies) == K + M
    assert enc.stored_bytes == sum(len(b) for b in enc.bodies)
    frame = zstandard.ZstdDecompressor().decompress(
        codec.decode(enc.ref, fragments_of(enc.bodies, enc.ref.root)))
    assert frame == chunk
    assert enc.ref.stored_size < len(chunk)  # it was compressed


def test_encoding_is_deterministic(codec: StripeCodec) -> None:
    chunk = chunk_bytes(2)
    assert codec.encode(chunk) == codec.encode(chunk)
    assert StripeCodec(K, M).encode(chunk) == codec.encode(chunk)


def test_decode_from_every_k_subset(codec: StripeCodec) -> None:
    chunk = chunk_bytes(3)
    enc = codec.encode(chunk)
    frags = fragments_of(enc.bodies, enc.ref.root)
    dctx = zstandard.ZstdDecompressor()
    subsets = 0
    for size in range(K, K + M + 1):
        for subset in itertools.combinations(range(K + M), size):
            frame = codec.decode(enc.ref, {i: frags[i] for i in subset})
            assert len(frame) == enc.ref.stored_size
            assert dctx.decompress(frame) == chunk, subset
            subsets += 1
    assert subsets == 15 + 6 + 1


@pytest.mark.parametrize("size", [1, 100, 4096, 300_001])
def test_round_trip_sizes(codec: StripeCodec, size: int) -> None:
    chunk = random.Random(size).randbytes(size)
    enc = codec.encode(chunk)
    frags = fragments_of(enc.bodies, enc.ref.root)
    parity_heavy = {i: frags[i] for i in (1, 3, 4, 5)}
    assert zstandard.ZstdDecompressor().decompress(codec.decode(enc.ref, parity_heavy)) == chunk


def test_wide_stripe_round_trip() -> None:
    wide = StripeCodec(16, 24)
    chunk = chunk_bytes(4, 200_000)
    enc = wide.encode(chunk)
    assert len(enc.bodies) == 40
    frags = fragments_of(enc.bodies, enc.ref.root)
    only_parity = {i: frags[i] for i in range(24, 40)}
    assert zstandard.ZstdDecompressor().decompress(wide.decode(enc.ref, only_parity)) == chunk


@pytest.mark.parametrize("subset", list(itertools.combinations(range(K + M), K - 1))[:6])
def test_decode_with_k_minus_1_fragments(codec: StripeCodec, subset: tuple[int, ...]) -> None:
    enc = codec.encode(chunk_bytes(5))
    frags = fragments_of(enc.bodies, enc.ref.root)
    with pytest.raises(ChunkUnavailableError,
                       match=f"chunk {enc.ref.chunk_id.hex()[:16]}: 3 of 4 needed fragments"):
        codec.decode(enc.ref, {i: frags[i] for i in subset})


def test_decode_with_no_fragments(codec: StripeCodec) -> None:
    enc = codec.encode(chunk_bytes(6))
    with pytest.raises(ChunkUnavailableError, match="0 of 4 needed fragments"):
        codec.decode(enc.ref, {})


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_stored_size_mismatch(codec: StripeCodec, delta: int) -> None:
    enc = codec.encode(chunk_bytes(7))
    frags = fragments_of(enc.bodies, enc.ref.root)
    ref = replace(enc.ref, stored_size=enc.ref.stored_size + delta)
    with pytest.raises(ChunkUnavailableError,
                       match=f"decoded {enc.ref.stored_size} bytes, manifest says "
                             f"{enc.ref.stored_size + delta}"):
        codec.decode(ref, frags)


def test_decode_rejects_garbage_fragments(codec: StripeCodec) -> None:
    enc = codec.encode(chunk_bytes(8))
    with pytest.raises(ChunkUnavailableError, match="erasure decode failed"):
        codec.decode(enc.ref, {i: b"\x00" * 200 for i in range(K)})


@pytest.mark.parametrize(("args", "shown"), [
    ((4, 2, "no_such_backend"), "not a valid EC type"),
    ((0, 2), "Invalid number of data fragments"),
])
def test_bad_parameters_fail_early(args: tuple, shown: str) -> None:
    with pytest.raises(ECDriverError, match=shown):
        StripeCodec(*args)


# --- placement ----------------------------------------------------------------------------

NODES = [NodeInfo(f"node-{i}", f"http://127.0.0.1:{9000 + i}") for i in range(1, 7)]
SEVENTH = NodeInfo("node-7", "http://127.0.0.1:9007")


def keys(count: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(32) for _ in range(count)]


def test_ranking_is_a_deterministic_permutation() -> None:
    for key in keys(200):
        order = ranking(NODES, key)
        assert sorted(n.id for n in order) == sorted(n.id for n in NODES)
        assert ranking(list(reversed(NODES)), key) == order
        assert ranking(tuple(NODES), key) == order


def test_ranking_follows_the_documented_score() -> None:
    key = b"some chunk id"
    scores = {n.id: hashlib.sha256(n.id.encode() + b"\x00" + key).digest() for n in NODES}
    assert [n.id for n in ranking(NODES, key)] == sorted(scores, key=scores.get, reverse=True)


def test_ranking_spreads_first_rank() -> None:
    firsts = [ranking(NODES, key)[0].id for key in keys(2000, seed=1)]
    counts = {n.id: firsts.count(n.id) for n in NODES}
    assert all(200 <= c <= 470 for c in counts.values()), counts


def test_seventh_node_moves_about_a_seventh() -> None:
    sample = keys(2000, seed=2)
    moved = 0
    for key in sample:
        before = ranking(NODES, key)
        after = ranking([*NODES, SEVENTH], key)
        # the old nodes keep their relative order
        assert [n for n in after if n != SEVENTH] == before
        if after[0] != before[0]:
            moved += 1
            assert after[0] == SEVENTH  # a key moves only to the new node
    assert 0.05 * len(sample) <= moved <= 0.25 * len(sample), moved


def test_shard_nodes_are_distinct() -> None:
    for key in keys(300, seed=3):
        for n in (1, 4, 6):
            chosen = shard_nodes(NODES, key, n)
            assert len(chosen) == n
            assert len({c.id for c in chosen}) == n
            assert chosen == ranking(NODES, key)[:n]


def test_record_nodes_rank_a_prefixed_key() -> None:
    key = "0123456789abcdfghijklmnpqrsvwxyz"
    assert record_nodes(NODES, key) == ranking(NODES, b"record:" + key.encode())
    assert len(record_nodes(NODES, key)) == len(NODES)

"""Streaming content-defined chunking (storage_network.coding.chunker) against FastCDC itself."""

from __future__ import annotations

import hashlib
import math
import random

import pytest
from fastcdc.fastcdc_cy import fastcdc_cy

from storage_network.coding.chunker import iter_chunks
from storage_network.config import ChunkingParams

SMALL = ChunkingParams(min_size=4096, avg_size=16384, max_size=65536)
MB = 1_000_000


def reference(data: bytes, params: ChunkingParams) -> list[bytes]:
    """FastCDC over the whole buffer at once."""
    return [data[c.offset:c.offset + c.length]
            for c in fastcdc_cy(data, params.min_size, params.avg_size, params.max_size)]


def random_pieces(data: bytes, rng: random.Random, largest: int = 3 * MB) -> list[bytes]:
    """``data`` cut at random points into pieces of 1 byte up to ``largest``.

    Sizes are log-uniform, with a 1-byte piece and a run of tiny pieces mixed in.
    """
    pieces = [data[:1]]
    pos = 1
    while pos < len(data):
        if len(pieces) % 4 == 1:
            sizes = [rng.randrange(1, 64) for _ in range(rng.randrange(1, 20))]
        else:
            sizes = [int(math.exp(rng.uniform(0, math.log(largest))))]
        for size in sizes:
            pieces.append(data[pos:pos + size])
            pos += size
    return [p for p in pieces if p]


@pytest.mark.parametrize(("params", "total", "seed"), [
    (SMALL, 3 * MB, 1),
    (SMALL, 5 * MB + 17, 2),
    (ChunkingParams(), 12 * MB, 3),
    (ChunkingParams(min_size=256, avg_size=1024, max_size=4096), MB, 4),
])
def test_random_pieces_give_fastcdc_chunks(params: ChunkingParams, total: int, seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(total)
    pieces = random_pieces(data, rng)
    assert min(len(p) for p in pieces) == 1 and max(len(p) for p in pieces) > 100_000
    got = list(iter_chunks(pieces, params))
    assert b"".join(got) == data
    assert [len(c) for c in got] == [len(c) for c in reference(data, params)]
    assert got == reference(data, params)


def test_one_byte_pieces() -> None:
    params = ChunkingParams(min_size=256, avg_size=1024, max_size=4096)
    data = random.Random(5).randbytes(60_000)
    pieces = [data[i:i + 1] for i in range(len(data))]
    assert list(iter_chunks(pieces, params)) == reference(data, params)


def test_low_entropy_payload_cut_at_max_size() -> None:
    """Runs of zeros never hit the mask: every chunk but the last is max_size."""
    data = bytes(10 * SMALL.max_size + 123)
    got = list(iter_chunks([data[:70_000], data[70_000:]], SMALL))
    assert got == reference(data, SMALL)
    assert [len(c) for c in got[:-1]] == [SMALL.max_size] * (len(got) - 1)


@pytest.mark.parametrize("pieces", [[], [b""], [b"", b"", b""]])
def test_empty_input_yields_nothing(pieces: list[bytes]) -> None:
    assert list(iter_chunks(pieces, SMALL)) == []


def test_input_shorter_than_min_size_is_one_chunk() -> None:
    assert list(iter_chunks([b"abc", b"de"], SMALL)) == [b"abcde"]


@pytest.mark.parametrize("params", [SMALL, ChunkingParams()])
def test_chunk_sizes_within_bounds(params: ChunkingParams) -> None:
    rng = random.Random(6)
    data = rng.randbytes(8 * MB)
    chunks = list(iter_chunks(random_pieces(data, rng), params))
    assert len(chunks) > 5
    for chunk in chunks[:-1]:
        assert params.min_size <= len(chunk) <= params.max_size
    assert 0 < len(chunks[-1]) <= params.max_size
    mean = len(data) / len(chunks)
    assert params.avg_size / 2 <= mean <= params.avg_size * 2


def test_insertion_keeps_most_chunks() -> None:
    """Content-defined chunking: 100 bytes inserted mid-payload change only nearby chunks."""
    rng = random.Random(7)
    data = rng.randbytes(4 * MB)
    middle = len(data) // 2
    edited = data[:middle] + rng.randbytes(100) + data[middle:]
    ids = [hashlib.sha256(c).digest() for c in iter_chunks(random_pieces(data, rng), SMALL)]
    new_ids = [hashlib.sha256(c).digest()
               for c in iter_chunks(random_pieces(edited, rng), SMALL)]
    shared = set(ids) & set(new_ids)
    assert len(ids) > 100
    assert len(shared) >= 0.8 * len(new_ids), f"{len(shared)} of {len(new_ids)} chunks shared"
    # the chunks before and after the edit are the same sequences
    assert new_ids[:len(ids) // 3] == ids[:len(ids) // 3]
    assert new_ids[-len(ids) // 3:] == ids[-len(ids) // 3:]

"""The systematic decode path: joining the k data fragments' payloads gives what
pyeclib's decode gives, for every codec a network may name."""

from __future__ import annotations

import random
import struct

import pytest
from pyeclib.ec_iface import ECDriver

from storage_network.coding.codec import (
    FRAGMENT_HEADER_BYTES,
    StripeCodec,
    join_data_fragments,
)
from storage_network.config import CODECS
from storage_network.wire.manifest import ChunkRef
from storage_network.wire.stripe import split_body

SIZES = (0, 1, 3, 63, 64, 65, 4095, 4096, 100_003, 262_144 + 7)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("k,m", [(4, 2), (3, 3), (1, 1)])
def test_join_matches_pyeclib_decode(codec: str, k: int, m: int) -> None:
    driver = ECDriver(k=k, m=m, ec_type=codec)
    rng = random.Random(f"{codec}-{k}-{m}")
    for size in SIZES:
        data = rng.randbytes(size)
        fragments = driver.encode(data)
        data_only = {i: fragments[i] for i in range(k)}
        assert join_data_fragments(k, data_only, size) == data
        assert driver.decode(list(data_only.values())) == data


def test_a_missing_data_fragment_or_odd_header_falls_back() -> None:
    driver = ECDriver(k=4, m=2, ec_type="isa_l_rs_cauchy")
    data = random.Random(1).randbytes(10_000)
    fragments = dict(enumerate(driver.encode(data)))
    with_parity = {i: fragments[i] for i in (0, 1, 2, 4)}
    assert join_data_fragments(4, with_parity, len(data)) is None
    swapped = {0: fragments[1], 1: fragments[0], 2: fragments[2], 3: fragments[3]}
    assert join_data_fragments(4, swapped, len(data)) is None
    assert join_data_fragments(4, fragments, len(data) + 1) is None  # size disagrees
    bad_magic = bytearray(fragments[2])
    struct.pack_into("<I", bad_magic, 59, 0)
    assert join_data_fragments(4, {**fragments, 2: bytes(bad_magic)}, len(data)) is None
    short = {**fragments, 3: fragments[3][:FRAGMENT_HEADER_BYTES + 5]}
    assert join_data_fragments(4, short, len(data)) is None


def test_decode_takes_views_and_rebuilds_from_parity_too() -> None:
    codec = StripeCodec(4, 2)
    chunk = random.Random(2).randbytes(50_000)
    encoded = codec.encode(chunk)
    ref = encoded.ref
    fragments = {i: split_body(i, body).fragment for i, body in enumerate(encoded.bodies)}
    frame = codec.decode(ref, {i: fragments[i] for i in range(4)})
    assert codec.decode(ref, {i: fragments[i] for i in (1, 3, 4, 5)}) == frame
    assert len(frame) == ref.stored_size
    assert isinstance(ref, ChunkRef)

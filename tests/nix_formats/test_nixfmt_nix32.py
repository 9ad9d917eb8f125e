"""nix32 encoding: known vectors, round trips, every error case."""

from __future__ import annotations

import hashlib
import os

import pytest

from nix_formats import nix32
from nix_formats.errors import Nix32Error, NixFormatError


def test_known_vectors() -> None:
    # sha256("abc") as printed by `nix hash file --base32` (also in Nix's tests/hash.sh).
    assert (
        nix32.encode(hashlib.sha256(b"abc").digest())
        == "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
    )
    assert nix32.encode(hashlib.sha1(b"abc").digest()) == "kpcd173cq987hw957sx6m0868wv3x6d9"
    # The last byte is the most significant: 1 << 248 starts the string.
    assert nix32.encode(bytes(31) + b"\x01") == "008" + "0" * 49
    assert nix32.encode(b"\x01" + bytes(31)) == "0" * 51 + "1"
    assert nix32.encode(b"") == ""
    assert nix32.encode(b"\x00") == "00"
    assert nix32.encode(b"\xff") == "7z"


@pytest.mark.parametrize("size", range(0, 80))
def test_round_trip_every_length(size: int) -> None:
    data = os.urandom(size)
    text = nix32.encode(data)
    assert len(text) == (size * 8 + 4) // 5 == nix32.encoded_length(size)
    assert set(text) <= set(nix32.ALPHABET)
    assert nix32.decode(text) == data


def test_lengths_of_nix_hashes() -> None:
    assert nix32.encoded_length(20) == 32  # store path hash
    assert nix32.encoded_length(32) == 52  # sha256
    assert nix32.encoded_length(16) == 26  # md5
    assert nix32.encoded_length(64) == 103  # sha512


def test_all_ones_and_zeros() -> None:
    assert nix32.decode(nix32.encode(b"\xff" * 32)) == b"\xff" * 32
    assert nix32.encode(bytes(20)) == "0" * 32


@pytest.mark.parametrize("bad", ["e", "o", "t", "u", "E", "A", "-", " ", "\u00e9"])
def test_decode_rejects_characters_outside_alphabet(bad: str) -> None:
    text = "0" * 10 + bad + "0" * 21
    with pytest.raises(Nix32Error, match=r"invalid nix32 character .* at position 10"):
        nix32.decode(text)


@pytest.mark.parametrize("length", [1, 3, 6, 33, 51, 54])
def test_decode_rejects_impossible_lengths(length: int) -> None:
    with pytest.raises(Nix32Error, match=rf"invalid nix32 length {length} "):
        nix32.decode("0" * length)


def test_decode_rejects_excess_high_bits() -> None:
    # 52 characters hold 260 bits; the top 4 must be zero, so the first char is 0 or 1.
    nix32.decode("1" + "0" * 51)
    with pytest.raises(Nix32Error, match="non-zero bits beyond 32 bytes"):
        nix32.decode("2" + "0" * 51)
    with pytest.raises(Nix32Error, match="non-zero bits beyond 1 bytes"):
        nix32.decode("z0")


def test_errors_are_nix_format_errors() -> None:
    with pytest.raises(NixFormatError):
        nix32.decode("e")


def test_is_valid() -> None:
    assert nix32.is_valid("0" * 32, 20)
    assert not nix32.is_valid("0" * 32, 32)
    assert not nix32.is_valid("e" * 32)
    assert nix32.is_valid("")


def test_encode_is_fast() -> None:
    digests = [hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(20000)]
    import time

    start = time.perf_counter()
    texts = [nix32.encode(d) for d in digests]
    back = [nix32.decode(t) for t in texts]
    elapsed = time.perf_counter() - start
    assert back == digests
    assert elapsed < 2.0, f"40000 nix32 operations took {elapsed:.2f}s"

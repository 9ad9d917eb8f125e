"""Nix hash strings: formatting and parsing in every accepted form."""

from __future__ import annotations

import base64
import hashlib

import pytest

from nix_formats import nix32
from nix_formats.errors import HashError
from nix_formats.hash import HASH_SIZES, format_hash, format_sha256_nix32, parse_nix_hash

ABC = hashlib.sha256(b"abc").digest()
ABC_NIX32 = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
ABC_HEX = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
ABC_B64 = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="


def test_format_sha256_nix32() -> None:
    assert format_sha256_nix32(ABC) == f"sha256:{ABC_NIX32}"


def test_format_hash_encodings() -> None:
    assert format_hash("sha256", ABC, "base16") == f"sha256:{ABC_HEX}"
    assert format_hash("sha256", ABC, "base64") == f"sha256:{ABC_B64}"
    assert format_hash("sha256", ABC, "sri") == f"sha256-{ABC_B64}"
    assert format_hash("sha256", ABC) == f"sha256:{ABC_NIX32}"


@pytest.mark.parametrize(
    "text",
    [
        f"sha256:{ABC_NIX32}",
        f"sha256:{ABC_HEX}",
        f"sha256:{ABC_HEX.upper()}",
        f"sha256:{ABC_B64}",
        f"sha256-{ABC_B64}",
    ],
)
def test_parse_every_form(text: str) -> None:
    assert parse_nix_hash(text) == ("sha256", ABC)


@pytest.mark.parametrize("algo", sorted(HASH_SIZES))
def test_round_trip_every_algorithm(algo: str) -> None:
    digest = hashlib.new(algo, b"x").digest()
    for encoding in ("nix32", "base16", "base64", "sri"):
        assert parse_nix_hash(format_hash(algo, digest, encoding)) == (algo, digest)


def test_bare_digest_needs_default_algo() -> None:
    assert parse_nix_hash(ABC_NIX32, default_algo="sha256") == ("sha256", ABC)
    with pytest.raises(HashError, match="does not include a type"):
        parse_nix_hash(ABC_NIX32)


def test_unknown_algorithm() -> None:
    with pytest.raises(HashError, match="unknown hash algorithm 'sha3'"):
        parse_nix_hash(f"sha3:{ABC_HEX}")
    with pytest.raises(HashError, match="unknown hash algorithm 'blake3'"):
        format_hash("blake3", ABC)


def test_wrong_length() -> None:
    with pytest.raises(HashError, match="wrong length 63 for sha256"):
        parse_nix_hash(f"sha256:{ABC_HEX[:-1]}")
    with pytest.raises(HashError, match="wrong length 0 for sha256"):
        parse_nix_hash("sha256:")


def test_bad_hex() -> None:
    with pytest.raises(HashError, match="invalid base16 hash .*non-hex character"):
        parse_nix_hash("sha256:" + "g" * 64)


def test_bad_nix32() -> None:
    with pytest.raises(HashError, match="invalid nix32 hash .*invalid nix32 character 'e'"):
        parse_nix_hash("sha256:" + "e" * 52)
    with pytest.raises(HashError, match="non-zero bits"):
        parse_nix_hash("sha256:z" + ABC_NIX32[1:])


def test_bad_base64() -> None:
    with pytest.raises(HashError, match="invalid base64 hash .*bad character or padding"):
        parse_nix_hash("sha256:" + "!" * 44)
    with pytest.raises(HashError, match="invalid base64 hash .*bad character or padding"):
        parse_nix_hash("sha256-" + "A" * 42 + "=A")
    with pytest.raises(HashError, match="decodes to 33 bytes, not 32"):
        parse_nix_hash("sha256-" + "A" * 44)
    # Non-zero bits in the unused part of the last character.
    with pytest.raises(HashError, match="non-canonical"):
        parse_nix_hash("sha256-" + ABC_B64[:-2] + "1=")


def test_sri_must_be_base64_length() -> None:
    with pytest.raises(HashError, match="invalid SRI hash .*needs 44 base64 characters, got 52"):
        parse_nix_hash(f"sha256-{ABC_NIX32}")


def test_format_wrong_digest_size() -> None:
    with pytest.raises(HashError, match="sha256 digest must be 32 bytes, got 20"):
        format_sha256_nix32(bytes(20))


def test_sha512_base64_is_padded() -> None:
    digest = hashlib.sha512(b"").digest()
    text = format_hash("sha512", digest, "sri")
    assert text == "sha512-" + base64.b64encode(digest).decode()
    assert len(nix32.encode(digest)) == 103

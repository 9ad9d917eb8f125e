"""Nix's base-32 encoding ("nix32").

Defined in Nix ``src/libutil/hash.cc`` (``printHash32`` / ``parseHash32``).

The alphabet is ``0123456789abcdfghijklmnpqrsvwxyz`` (no ``e o t u``).  The
bytes are read as one little-endian integer and the output runs from its most
significant 5-bit group down to the least significant one, so a ``n``-byte
input gives ``ceil(n * 8 / 5)`` characters (20 bytes -> 32 chars, 32 -> 52).

This is *not* RFC 4648 base32, but it is the same 5-bit grouping of the same
integer written big-endian, so both directions are done with
:func:`base64.b32encode` / :func:`base64.b32decode` and a translation table
(no per-character Python loop).
"""

from __future__ import annotations

import base64
import re

from .errors import Nix32Error

__all__ = ["ALPHABET", "decode", "decoded_length", "encode", "encoded_length", "is_valid"]

ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"
_RFC_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_TO_NIX = bytes.maketrans(_RFC_ALPHABET.encode(), ALPHABET.encode())
_TO_RFC = bytes.maketrans(ALPHABET.encode(), _RFC_ALPHABET.encode())
_VALID = re.compile(r"[0-9a-df-np-sv-z]*")
_INVALID_CHAR = re.compile(r"[^0-9a-df-np-sv-z]")


def encoded_length(size: int) -> int:
    """Number of nix32 characters for ``size`` bytes: ``ceil(size * 8 / 5)``."""
    return (size * 8 + 4) // 5


def decoded_length(length: int) -> int:
    """Number of bytes encoded by ``length`` nix32 characters: ``floor(length * 5 / 8)``.

    Only meaningful when ``encoded_length(decoded_length(length)) == length``.
    """
    return length * 5 // 8


def encode(data: bytes) -> str:
    """Encode ``data`` (any number of bytes) as a nix32 string.

    Returns ``ceil(len(data) * 8 / 5)`` characters of :data:`ALPHABET`
    (``""`` for empty input).  Never raises.  Format: Nix ``src/libutil/hash.cc``
    ``printHash32``.
    """
    length = encoded_length(len(data))
    if length == 0:
        return ""
    value = int.from_bytes(data, "little")
    # Whole 40-bit (8-character) groups, so the RFC 4648 grouping lines up
    # with the least significant bit; the top characters are then zeros.
    nbytes = (length + 7) // 8 * 5
    text = base64.b32encode(value.to_bytes(nbytes, "big")).translate(_TO_NIX)
    return text[-length:].decode("ascii")


def decode(text: str) -> bytes:
    """Decode a nix32 string into ``floor(len(text) * 5 / 8)`` bytes.

    Raises :class:`~nix_formats.errors.Nix32Error` if ``text`` contains a
    character outside :data:`ALPHABET` (upper case is invalid too), if its
    length is not the encoding length of any byte count (e.g. 1, 3, 33), or if
    the unused high bits of the first character are not zero (Nix rejects
    those as "invalid base-32 hash").  Format: Nix ``src/libutil/hash.cc``
    ``parseHash32``.
    """
    if not _VALID.fullmatch(text):
        bad = _INVALID_CHAR.search(text)
        assert bad is not None
        raise Nix32Error(
            f"invalid nix32 character {bad.group()!r} at position {bad.start()} in {text!r}"
        )
    size = decoded_length(len(text))
    if encoded_length(size) != len(text):
        raise Nix32Error(
            f"invalid nix32 length {len(text)} for {text!r}: not the encoding of a whole "
            f"number of bytes"
        )
    if size == 0:
        return b""
    pad = (-len(text)) % 8
    raw = base64.b32decode(("0" * pad + text).encode("ascii").translate(_TO_RFC))
    value = int.from_bytes(raw, "big")
    if value >> (size * 8):
        raise Nix32Error(
            f"invalid nix32 string {text!r}: non-zero bits beyond {size} bytes "
            f"in the first character"
        )
    return value.to_bytes(size, "little")


def is_valid(text: str, size: int | None = None) -> bool:
    """True if ``text`` decodes as nix32 (to exactly ``size`` bytes when given)."""
    try:
        data = decode(text)
    except Nix32Error:
        return False
    return size is None or len(data) == size

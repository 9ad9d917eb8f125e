"""Nix hash strings: ``<algo>:<digest>`` and SRI ``<algo>-<base64>``.

Defined in Nix ``src/libutil/hash.cc`` (``Hash::parseAnyPrefixed``,
``Hash::to_string``).  A prefixed hash's digest may be written in base16
(lower or upper case hex), nix32 or base64; Nix tells them apart by length
alone, which is unambiguous for the four supported algorithms.  An SRI hash
(``sha256-...``) is always base64 with ``=`` padding.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from . import nix32
from .errors import HashError, Nix32Error

__all__ = [
    "HASH_SIZES",
    "format_hash",
    "format_sha256_nix32",
    "parse_nix_hash",
]

#: Digest size in bytes of each algorithm Nix knows.
HASH_SIZES: dict[str, int] = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}

Encoding = Literal["nix32", "base16", "base64", "sri"]

_HEX = re.compile(r"[0-9a-fA-F]*")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _base64_length(size: int) -> int:
    return (size + 2) // 3 * 4


def format_hash(algo: str, digest: bytes, encoding: Encoding = "nix32") -> str:
    """Render a digest the way Nix does.

    ``encoding``: ``"nix32"`` -> ``algo:<nix32>``, ``"base16"`` -> ``algo:<hex>``,
    ``"base64"`` -> ``algo:<base64>``, ``"sri"`` -> ``algo-<base64>``.
    ``digest`` must be exactly ``HASH_SIZES[algo]`` bytes.

    Raises :class:`~nix_formats.errors.HashError` for an unknown algorithm or
    a digest of the wrong size.  Format: Nix ``src/libutil/hash.cc``
    (``Hash::to_string``).
    """
    size = HASH_SIZES.get(algo)
    if size is None:
        raise HashError(f"unknown hash algorithm {algo!r} (expected one of {sorted(HASH_SIZES)})")
    if len(digest) != size:
        raise HashError(f"{algo} digest must be {size} bytes, got {len(digest)}")
    if encoding == "nix32":
        return f"{algo}:{nix32.encode(digest)}"
    if encoding == "base16":
        return f"{algo}:{digest.hex()}"
    b64 = base64.b64encode(digest).decode("ascii")
    if encoding == "base64":
        return f"{algo}:{b64}"
    if encoding == "sri":
        return f"{algo}-{b64}"
    raise HashError(f"unknown hash encoding {encoding!r}")


def format_sha256_nix32(digest: bytes) -> str:
    """``"sha256:<52 nix32 chars>"`` for a 32-byte sha256 ``digest``.

    This is the form of ``NarHash:``/``FileHash:`` lines and of the narinfo
    fingerprint.  Raises :class:`~nix_formats.errors.HashError` if ``digest``
    is not 32 bytes.  Format: Nix ``src/libutil/hash.cc``.
    """
    return format_hash("sha256", digest, "nix32")


def _decode_digest(text: str, algo: str, whole: str, sri: bool) -> bytes:
    size = HASH_SIZES[algo]
    b64_len = _base64_length(size)
    if sri:
        if len(text) != b64_len:
            raise HashError(
                f"invalid SRI hash {whole!r}: {algo} needs {b64_len} base64 characters, "
                f"got {len(text)}"
            )
    elif len(text) == 2 * size:
        if not _HEX.fullmatch(text):
            raise HashError(f"invalid base16 hash {whole!r}: non-hex character")
        return bytes.fromhex(text)
    elif len(text) == nix32.encoded_length(size):
        try:
            return nix32.decode(text)
        except Nix32Error as exc:
            raise HashError(f"invalid nix32 hash {whole!r}: {exc}") from None
    elif len(text) != b64_len:
        raise HashError(
            f"hash {whole!r} has wrong length {len(text)} for {algo} (expected "
            f"{2 * size} base16, {nix32.encoded_length(size)} nix32 or {b64_len} base64 "
            f"characters)"
        )
    if not _B64.fullmatch(text):
        raise HashError(f"invalid base64 hash {whole!r}: bad character or padding")
    try:
        digest = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise HashError(f"invalid base64 hash {whole!r}: {exc}") from None
    if len(digest) != size:
        raise HashError(f"base64 hash {whole!r} decodes to {len(digest)} bytes, not {size}")
    if base64.b64encode(digest).decode("ascii") != text:
        raise HashError(f"invalid base64 hash {whole!r}: non-canonical encoding")
    return digest


def parse_nix_hash(text: str, default_algo: str | None = None) -> tuple[str, bytes]:
    """Parse a Nix hash string into ``(algo, digest bytes)``.

    Accepted forms (``algo`` one of ``md5 sha1 sha256 sha512``):

    - ``algo:<digest>`` with the digest in base16 (either case), nix32 or
      base64, recognised by its length;
    - SRI ``algo-<base64>``;
    - a bare digest (no prefix) only when ``default_algo`` is given.

    Returns the algorithm name and ``HASH_SIZES[algo]`` digest bytes.
    Raises :class:`~nix_formats.errors.HashError` for a missing or unknown
    algorithm, a wrong length, or a bad character.  Format: Nix
    ``src/libutil/hash.cc`` (``Hash::parseAnyPrefixed``).
    """
    colon = text.find(":")
    sri = False
    if colon >= 0:
        algo, rest = text[:colon], text[colon + 1 :]
    else:
        dash = text.find("-")
        if dash >= 0:
            algo, rest, sri = text[:dash], text[dash + 1 :], True
        elif default_algo is not None:
            algo, rest = default_algo, text
        else:
            raise HashError(f"hash {text!r} does not include a type ('sha256:' or 'sha256-')")
    if algo not in HASH_SIZES:
        raise HashError(
            f"unknown hash algorithm {algo!r} in {text!r} (expected one of {sorted(HASH_SIZES)})"
        )
    return algo, _decode_digest(rest, algo, text, sri)

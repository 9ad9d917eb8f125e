"""Pure Nix formats: nix32, hashes, store paths, NAR, narinfo, ed25519 keys.

No I/O beyond reading a file tree for :func:`dump_path` and key files; no
network, no subprocess, no other package of this project.  Every format is
checked against Nix 2.8.0; each module names the Nix source file that defines
its format.  Every error raised is a :class:`NixFormatError`.

Modules:

- :mod:`nix_formats.nix32`: ``encode``/``decode`` of Nix base-32;
- :mod:`nix_formats.hash`: ``sha256:<nix32>``, base16 and SRI hash strings;
- :mod:`nix_formats.store_path`: :class:`StorePath`, ``validate_hash_part``;
- :mod:`nix_formats.nar`: the NAR format, ``dump_path``;
- :mod:`nix_formats.nar_parser`: :class:`NarParser`, ``validate_nar``;
- :mod:`nix_formats.narinfo`: :class:`NarInfo` parse/render/fingerprint;
- :mod:`nix_formats.keys`: :class:`SecretKey`, :class:`PublicKey`, signing;
- :mod:`nix_formats.errors`: the exception tree.
"""

from __future__ import annotations

from . import nix32
from .errors import (
    HashError,
    NarError,
    NarInfoError,
    Nix32Error,
    NixFormatError,
    NixKeyError,
    SignatureError,
    StorePathError,
)
from .hash import HASH_SIZES, format_hash, format_sha256_nix32, parse_nix_hash
from .keys import PublicKey, SecretKey, sign_narinfo, verify_narinfo
from .nar import NAR_MAGIC, dump_path, nar_hash_of_path
from .nar_parser import NarParser, NarStats, validate_nar
from .narinfo import NarInfo
from .store_path import STORE_DIR, StorePath, parse_basename, validate_hash_part

__all__ = [
    "HASH_SIZES",
    "NAR_MAGIC",
    "STORE_DIR",
    "HashError",
    "NarError",
    "NarInfo",
    "NarInfoError",
    "NarParser",
    "NarStats",
    "Nix32Error",
    "NixFormatError",
    "NixKeyError",
    "PublicKey",
    "SecretKey",
    "SignatureError",
    "StorePath",
    "StorePathError",
    "dump_path",
    "format_hash",
    "format_sha256_nix32",
    "nar_hash_of_path",
    "nix32",
    "parse_basename",
    "parse_nix_hash",
    "sign_narinfo",
    "validate_hash_part",
    "validate_nar",
    "verify_narinfo",
]

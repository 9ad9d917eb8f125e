"""Nix store paths: ``/nix/store/<32-char nix32 hash>-<name>``.

Validation follows Nix ``src/libstore/path.cc`` (``StorePath::StorePath``,
``checkName``):

- the hash part is exactly 32 characters of the nix32 alphabet
  (``0-9 a-z`` without ``e o t u``), i.e. a 20-byte digest;
- it is followed by ``-`` and a name of 1..211 characters from
  ``[A-Za-z0-9+-._?=]``;
- the name must not start with ``.`` (newer Nix rejects that; Nix 2.8 does not
  check it, but no real store path has such a name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import StorePathError

__all__ = [
    "HASH_PART_LEN",
    "MAX_NAME_LEN",
    "STORE_DIR",
    "StorePath",
    "parse_basename",
    "validate_hash_part",
    "validate_name",
    "validate_store_dir",
]

#: The store directory of every store this project deals with.
STORE_DIR = "/nix/store"
#: Length of the hash part in characters (a 160-bit digest in nix32).
HASH_PART_LEN = 32
#: Maximum length of the name part in characters.
MAX_NAME_LEN = 211

_HASH_RE = re.compile(r"[0-9a-df-np-sv-z]{32}")
_HASH_BAD_CHAR = re.compile(r"[^0-9a-df-np-sv-z]")
_NAME_RE = re.compile(r"[A-Za-z0-9+\-._?=]+")
_NAME_BAD_CHAR = re.compile(r"[^A-Za-z0-9+\-._?=]")


def validate_hash_part(text: str) -> str:
    """Check that ``text`` is a store-path hash part and return it unchanged.

    A hash part is exactly 32 characters of the nix32 alphabet
    (``0123456789abcdfghijklmnpqrsvwxyz``).  Use it for the ``<hash>`` of a
    ``<hash>.narinfo`` URL.  Raises :class:`~nix_formats.errors.StorePathError`
    naming the wrong length or the first illegal character.  Rule from Nix
    ``src/libstore/path.cc``.
    """
    if _HASH_RE.fullmatch(text):
        return text
    if len(text) != HASH_PART_LEN:
        raise StorePathError(
            f"store path hash {text!r} has {len(text)} characters, expected {HASH_PART_LEN}"
        )
    bad = _HASH_BAD_CHAR.search(text)
    assert bad is not None
    raise StorePathError(
        f"store path hash {text!r} contains illegal base-32 character {bad.group()!r} "
        f"at position {bad.start()}"
    )


def validate_name(name: str) -> str:
    """Check that ``name`` is a store-path name (the part after ``<hash>-``) and return
    it unchanged: 1 to :data:`MAX_NAME_LEN` characters of ``[A-Za-z0-9+-._?=]``.

    Raises:
        StorePathError: empty, too long, or with a character a name cannot have.
    """
    _validate_name(name, name)
    return name


def _validate_name(name: str, context: str) -> None:
    if not name:
        raise StorePathError(f"store path {context!r} has an empty name")
    if len(name) > MAX_NAME_LEN:
        raise StorePathError(
            f"store path {context!r} has a name of {len(name)} characters, longer than "
            f"{MAX_NAME_LEN}"
        )
    if not _NAME_RE.fullmatch(name):
        bad = _NAME_BAD_CHAR.search(name)
        assert bad is not None
        raise StorePathError(
            f"store path {context!r} contains illegal character {bad.group()!r} in its name"
        )
    if name.startswith("."):
        raise StorePathError(f"store path {context!r} has a name starting with '.'")


def validate_store_dir(store_dir: str) -> str:
    """Check a store directory (absolute, no trailing ``/``) and return it.

    Raises :class:`~nix_formats.errors.StorePathError` otherwise.
    """
    if not store_dir.startswith("/") or (store_dir != "/" and store_dir.endswith("/")):
        raise StorePathError(
            f"store directory {store_dir!r} must be an absolute path without a trailing '/'"
        )
    return store_dir


@dataclass(frozen=True, order=True)
class StorePath:
    """A validated store path, kept as its two parts (no store directory).

    ``hash_part``: 32 nix32 characters; ``name``: 1..211 characters of
    ``[A-Za-z0-9+-._?=]`` not starting with ``.``.  Constructing one with bad
    parts raises :class:`~nix_formats.errors.StorePathError`.  Ordering is by
    ``(hash_part, name)``, which is also the order of the basenames and of the
    full paths.  Rules from Nix ``src/libstore/path.cc``.
    """

    hash_part: str
    name: str

    def __post_init__(self) -> None:
        validate_hash_part(self.hash_part)
        _validate_name(self.name, f"{self.hash_part}-{self.name}")

    @property
    def basename(self) -> str:
        """``"<hash>-<name>"``, the form used in narinfo ``References:``/``Deriver:``."""
        return f"{self.hash_part}-{self.name}"

    @property
    def path(self) -> str:
        """The full path under :data:`STORE_DIR`: ``"/nix/store/<hash>-<name>"``."""
        return f"{STORE_DIR}/{self.hash_part}-{self.name}"

    def in_store(self, store_dir: str = STORE_DIR) -> str:
        """The full path under ``store_dir``: ``"<store_dir>/<hash>-<name>"``."""
        return f"{store_dir}/{self.hash_part}-{self.name}"

    def __str__(self) -> str:
        return self.path

    @classmethod
    def parse(cls, text: str, store_dir: str = STORE_DIR) -> StorePath:
        """Parse a full store path ``"<store_dir>/<hash>-<name>"``.

        Nothing may follow the name (``/nix/store/<hash>-foo/bin`` is not a
        store path).  Raises :class:`~nix_formats.errors.StorePathError` if
        ``text`` is not directly inside ``store_dir`` or its basename is invalid.
        """
        prefix = validate_store_dir(store_dir).rstrip("/") + "/"
        if not text.startswith(prefix):
            raise StorePathError(f"path {text!r} is not in the Nix store {store_dir!r}")
        rest = text[len(prefix) :]
        if "/" in rest:
            raise StorePathError(
                f"path {text!r} is not a store path: it has components after the store "
                f"path basename"
            )
        return cls.parse_basename(rest)

    @classmethod
    def parse_basename(cls, text: str) -> StorePath:
        """Parse ``"<hash>-<name>"`` (no store directory).

        Raises :class:`~nix_formats.errors.StorePathError` if it is shorter
        than 33 characters, the hash part is not 32 nix32 characters, the 33rd
        character is not ``-``, or the name is invalid.
        """
        if len(text) < HASH_PART_LEN + 1:
            raise StorePathError(f"{text!r} is too short to be a valid store path basename")
        if "/" in text:
            raise StorePathError(f"store path basename {text!r} contains '/'")
        if text[HASH_PART_LEN] != "-":
            raise StorePathError(
                f"store path basename {text!r} has no '-' after the {HASH_PART_LEN}-character "
                f"hash part"
            )
        hash_part = text[:HASH_PART_LEN]
        try:
            validate_hash_part(hash_part)
        except StorePathError as exc:
            raise StorePathError(f"store path {text!r}: {exc}") from None
        return cls(hash_part, text[HASH_PART_LEN + 1 :])


def parse_basename(text: str) -> StorePath:
    """Module-level alias of :meth:`StorePath.parse_basename`."""
    return StorePath.parse_basename(text)

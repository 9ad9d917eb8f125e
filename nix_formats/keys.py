"""Nix ed25519 signing keys and narinfo signatures.

Format defined in Nix ``src/libutil/crypto.cc`` (``SecretKey``, ``PublicKey``,
``verifyDetached``); the same files ``nix-store --generate-binary-cache-key``
writes:

- secret key: ``<name>:<base64 of 64 bytes>`` = 32-byte seed + 32-byte public key;
- public key: ``<name>:<base64 of 32 bytes>``;
- signature (a narinfo ``Sig:`` value): ``<name>:<base64 of 64 bytes>``, an
  ed25519 signature of :meth:`nix_formats.narinfo.NarInfo.fingerprint`.

The name is everything before the first ``:`` and must not be empty.
Ed25519 is deterministic, so a signature made here is identical to the one
``nix store sign`` makes with the same key.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing

from .errors import NixKeyError, SignatureError
from .narinfo import NarInfo, check_sig_text

__all__ = ["PublicKey", "SecretKey", "sign_narinfo", "verify_narinfo"]

_SEED_BYTES = 32
_PUBLIC_BYTES = 32
_SECRET_BYTES = 64
_SIG_BYTES = 64


def _split(text: str, what: str) -> tuple[str, bytes]:
    """Split ``name:base64`` and decode; the error never quotes key material."""
    name, sep, b64 = text.strip().partition(":")
    if not sep:
        raise NixKeyError(f"{what} is not of the form <name>:<base64> (no ':')")
    if not name:
        raise NixKeyError(f"{what} has an empty name")
    if not b64:
        raise NixKeyError(f"{what} {name!r} has no key data after ':'")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise NixKeyError(f"{what} {name!r}: key data is not valid base64") from None
    return name, raw


def _check_name(name: str) -> None:
    if not name or ":" in name:
        raise NixKeyError(f"key name {name!r} must be non-empty and contain no ':'")


@dataclass(frozen=True)
class PublicKey:
    """An ed25519 public key with its Nix name (``name:base64(32 bytes)``).

    ``name``: non-empty, no ``:``; ``verify_key``: a
    :class:`nacl.signing.VerifyKey`.  Format: Nix ``src/libutil/crypto.cc``.
    """

    name: str
    verify_key: nacl.signing.VerifyKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """Parse ``"<name>:<base64 of 32 bytes>"`` (surrounding whitespace ignored).

        Raises :class:`~nix_formats.errors.NixKeyError` for a missing ``:``,
        empty name, bad base64, or a key that is not 32 bytes.
        """
        name, raw = _split(text, "public key")
        if len(raw) != _PUBLIC_BYTES:
            raise NixKeyError(
                f"public key {name!r} is {len(raw)} bytes, expected {_PUBLIC_BYTES} "
                f"(is it a secret key?)"
            )
        return cls(name, nacl.signing.VerifyKey(raw))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PublicKey:
        """Read and :meth:`parse` a public key file (``OSError`` if unreadable)."""
        with open(path, encoding="ascii", errors="replace") as fh:
            return cls.parse(fh.read())

    def text(self) -> str:
        """``"<name>:<base64 of 32 bytes>"``, the form of nix.conf ``trusted-public-keys``."""
        return f"{self.name}:{base64.b64encode(bytes(self.verify_key)).decode('ascii')}"

    def verify(self, fingerprint: str, sig_text: str) -> bool:
        """True if ``sig_text`` (a ``Sig:`` value) is this key's signature of ``fingerprint``.

        Returns False if the signature names another key or does not verify.
        Raises :class:`~nix_formats.errors.SignatureError` if ``sig_text`` is
        not ``<name>:<base64 of 64 bytes>``.
        """
        check_sig_text(sig_text)
        name, _, b64 = sig_text.partition(":")
        if name != self.name:
            return False
        raw = base64.b64decode(b64)
        if len(raw) != _SIG_BYTES:
            raise SignatureError(f"signature of key {name!r} is {len(raw)} bytes, not 64")
        try:
            self.verify_key.verify(fingerprint.encode("utf-8"), raw)
        except nacl.exceptions.BadSignatureError:
            return False
        return True


@dataclass(frozen=True)
class SecretKey:
    """An ed25519 secret key with its Nix name (``name:base64(seed + public)``).

    ``name``: non-empty, no ``:``; ``signing_key``: a
    :class:`nacl.signing.SigningKey` (left out of ``repr``).
    Format: Nix ``src/libutil/crypto.cc``.
    """

    name: str
    signing_key: nacl.signing.SigningKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)

    @classmethod
    def generate(cls, name: str) -> SecretKey:
        """A new random key called ``name`` (like ``nix-store --generate-binary-cache-key``)."""
        return cls(name, nacl.signing.SigningKey.generate())

    @classmethod
    def parse(cls, text: str) -> SecretKey:
        """Parse ``"<name>:<base64 of 64 bytes>"`` (surrounding whitespace ignored).

        Raises :class:`~nix_formats.errors.NixKeyError` for a missing ``:``,
        empty name, bad base64, a key that is not 64 bytes, or a public half
        (last 32 bytes) that does not belong to the seed (first 32 bytes).
        Messages never include key material.
        """
        name, raw = _split(text, "secret key")
        if len(raw) != _SECRET_BYTES:
            raise NixKeyError(
                f"secret key {name!r} is {len(raw)} bytes, expected {_SECRET_BYTES} "
                f"(is it a public key?)"
            )
        signing_key = nacl.signing.SigningKey(raw[:_SEED_BYTES])
        if bytes(signing_key.verify_key) != raw[_SEED_BYTES:]:
            raise NixKeyError(
                f"secret key {name!r} is corrupt: its public half does not match its seed"
            )
        return cls(name, signing_key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SecretKey:
        """Read and :meth:`parse` a secret key file (``OSError`` if unreadable)."""
        with open(path, encoding="ascii", errors="replace") as fh:
            return cls.parse(fh.read())

    def text(self) -> str:
        """``"<name>:<base64 of seed + public>"``, the secret key file's content."""
        raw = bytes(self.signing_key) + bytes(self.signing_key.verify_key)
        return f"{self.name}:{base64.b64encode(raw).decode('ascii')}"

    def public_key(self) -> PublicKey:
        """The matching :class:`PublicKey` (same name)."""
        return PublicKey(self.name, self.signing_key.verify_key)

    def sign(self, fingerprint: str) -> str:
        """Sign ``fingerprint`` (UTF-8); return the ``Sig:`` value ``"<name>:<base64>"``.

        The signature is 64 bytes (88 base64 characters).
        """
        signature = self.signing_key.sign(fingerprint.encode("utf-8")).signature
        return f"{self.name}:{base64.b64encode(signature).decode('ascii')}"


def verify_narinfo(narinfo: NarInfo, trusted: Iterable[PublicKey]) -> bool:
    """True if any ``Sig:`` of ``narinfo`` is a valid signature by a ``trusted`` key.

    Signatures by untrusted key names, and signatures that do not verify or
    are malformed, are ignored (as Nix does with signatures it cannot use).
    Raises :class:`~nix_formats.errors.NarInfoError` if the fingerprint cannot
    be computed (NarHash not sha256, NarSize 0, bad reference).
    """
    keys: dict[str, list[PublicKey]] = {}
    for key in trusted:
        keys.setdefault(key.name, []).append(key)
    if not keys or not narinfo.sigs:
        return False
    fingerprint = narinfo.fingerprint()
    for sig in narinfo.sigs:
        name = sig.partition(":")[0]
        for key in keys.get(name, ()):
            try:
                if key.verify(fingerprint, sig):
                    return True
            except SignatureError:
                continue
    return False


def sign_narinfo(narinfo: NarInfo, key: SecretKey) -> str:
    """Sign ``narinfo``'s fingerprint with ``key`` and append the ``Sig:`` value.

    Does nothing if the identical signature is already there (ed25519 is
    deterministic).  Returns the signature text.  Raises
    :class:`~nix_formats.errors.NarInfoError` if the fingerprint cannot be
    computed.
    """
    sig = key.sign(narinfo.fingerprint())
    if sig not in narinfo.sigs:
        narinfo.sigs.append(sig)
    return sig

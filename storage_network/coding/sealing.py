"""Private caches: the cache secret, the keys derived from it and the one AEAD construction.

A private cache keeps only ciphertext on its nodes (docs/private-caches.md).
Everything is derived from a *cache secret*: 32 random bytes with a name,
written as one line ``name:base64(32 bytes)`` (the shape of a Nix key file).
A :class:`Keyring` holds one or more of them, newest first: new writes use
the first, reads try each (key rotation).

Derivations (keyed BLAKE2b from :mod:`hashlib`, the secret as the key and a
personalisation string per purpose, so no two purposes share an output):

=====================  ================================================  ==========
what                   input                                             personal
=====================  ================================================  ==========
chunk id (32 bytes)    SHA-256 of the uncompressed chunk                 nxs-chunk-id
chunk key (32 bytes)   SHA-256 of the uncompressed chunk                 nxs-chunk-key
record key (20 bytes,  the plain record key (a store-path hash part)     nxs-record-key
as 32 base32 chars)
metadata key (32)      nothing                                           nxs-metadata
secret id (8 bytes)    nothing                                           nxs-secret-id
=====================  ================================================  ==========

So the same chunk in one cache always gets the same id, key and
ciphertext (dedup works), while nobody without the secret can compute an
id from content (no confirmation of a file by its id).

The AEAD is AES-256-GCM from the ``cryptography`` package.  Chosen over
XChaCha20-Poly1305 (pynacl) by measurement on 90 KiB frames, one core of
this machine: 13 GB/s against 1.7 GB/s to decrypt, so a gateway spends
about 0.08 rather than 0.6 CPU-seconds per GB of compressed NAR on it
(``benchmarks/aead.py``).  Its 96-bit nonce is never random: it is an
HMAC-SHA256 of the additional data and the plaintext under the message's key
(:func:`seal`; SHA-256 runs at 2 GB/s here against 1.1 GB/s for keyed
BLAKE2b), so one key and one nonce never meet two plaintexts.  A
chunk key is unique to one plaintext chunk, yet two publishers may
compress it into different frames (another zstd version or level); their
nonces then differ too.  Sealed bytes are ``nonce (12) | ciphertext | tag
(16)``: :data:`SEAL_OVERHEAD` bytes more than the plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage_network.errors import CacheSecretError, SealError

SECRET_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES
"""Bytes :func:`seal` adds to its plaintext (nonce and tag)."""
SECRET_ID_BYTES = 8
_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z")


def _prf(key: bytes, person: bytes, data: bytes = b"", size: int = 32) -> bytes:
    """Keyed BLAKE2b of ``data`` under ``key`` with personalisation ``person``."""
    return hashlib.blake2b(data, key=key, person=person, digest_size=size).digest()


def seal(key: bytes, plaintext: bytes | memoryview, aad: bytes) -> bytes:
    """AES-256-GCM of ``plaintext`` under ``key`` with a synthetic nonce.

    The nonce is the first 12 bytes of HMAC-SHA256 under ``key`` of
    ``u32 len(aad) | aad | plaintext``.

    Args:
        key: 32 bytes.
        aad: additional data bound to the ciphertext (not stored in it).

    Returns:
        ``nonce (12) | ciphertext | tag (16)``; the same inputs always give
        the same bytes.
    """
    mac = hmac.new(key, struct.pack(">I", len(aad)) + aad, "sha256")
    mac.update(plaintext)
    iv = mac.digest()[:NONCE_BYTES]
    return iv + AESGCM(key).encrypt(iv, bytes(plaintext), aad)


def unseal(key: bytes, sealed: bytes | memoryview, aad: bytes) -> bytes:
    """The plaintext of :func:`seal` output.

    Raises:
        SealError: too short, or the tag does not match (another key, other
            additional data, or altered bytes).
    """
    view = memoryview(sealed)
    if len(view) < SEAL_OVERHEAD:
        raise SealError(f"sealed bytes of length {len(view)} are shorter than nonce and tag")
    try:
        return AESGCM(key).decrypt(bytes(view[:NONCE_BYTES]), bytes(view[NONCE_BYTES:]), aad)
    except InvalidTag as exc:
        raise SealError("sealed bytes do not open: another cache secret, or altered") from exc


@dataclass(frozen=True)
class ChunkSecrets:
    """What a private cache derives for one chunk: its id (placement, shard ids,
    dedup) and the key of its frame (32 bytes each)."""

    chunk_id: bytes
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class CacheSecret:
    """One named cache secret (32 bytes) and what is derived from it (module docstring)."""

    name: str
    secret: bytes = field(repr=False)

    @classmethod
    def generate(cls, name: str) -> CacheSecret:
        """A new random secret (``os.urandom``).

        Raises:
            CacheSecretError: ``name`` is not 1-64 of ``[A-Za-z0-9._+-]``.
        """
        cls._check_name(name)
        return cls(name, os.urandom(SECRET_BYTES))

    @classmethod
    def parse(cls, text: str) -> CacheSecret:
        """Parse ``name:base64(32 bytes)`` (surrounding whitespace ignored).

        Raises:
            CacheSecretError: no colon, a bad name, bad base64 or not 32 bytes.
        """
        name, sep, b64 = text.strip().partition(":")
        if not sep:
            raise CacheSecretError("a cache secret is `name:base64`, found no colon")
        cls._check_name(name)
        try:
            secret = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CacheSecretError(f"cache secret {name!r}: not base64") from exc
        if len(secret) != SECRET_BYTES:
            raise CacheSecretError(
                f"cache secret {name!r}: {len(secret)} bytes, want {SECRET_BYTES}")
        return cls(name, secret)

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME_RE.fullmatch(name):  # the name is not echoed: it may be key material
            raise CacheSecretError(f"a cache secret name of {len(name)} characters: want "
                                   "1-64 of A-Z a-z 0-9 . _ + -, starting with a letter or digit")

    def text(self) -> str:
        """``name:base64``, the line :meth:`parse` reads."""
        return f"{self.name}:{base64.b64encode(self.secret).decode()}"

    @cached_property
    def secret_id(self) -> bytes:
        """8 bytes naming this secret in sealed metadata (reveals nothing of it)."""
        return _prf(self.secret, b"nxs-secret-id", size=SECRET_ID_BYTES)

    @cached_property
    def metadata_key(self) -> bytes:
        """The key of sealed record metadata (32 bytes)."""
        return _prf(self.secret, b"nxs-metadata")

    def chunk(self, plain_hash: bytes) -> ChunkSecrets:
        """The id and key of the chunk whose uncompressed bytes hash (SHA-256) to ``plain_hash``."""
        return ChunkSecrets(_prf(self.secret, b"nxs-chunk-id", plain_hash),
                            _prf(self.secret, b"nxs-chunk-key", plain_hash))

    def record_key(self, plain_key: str) -> str:
        """The keyed record key of ``plain_key``: 32 characters of lowercase base32
        (RFC 4648) of 20 bytes, a valid record key and all that nodes see."""
        digest = _prf(self.secret, b"nxs-record-key", plain_key.encode(), size=20)
        return base64.b32encode(digest).decode().lower()


class Keyring(Sequence[CacheSecret]):
    """Cache secrets, newest first: writes use :attr:`current`, reads try each.

    Text form: one :meth:`CacheSecret.text` line per secret, newest first;
    blank lines and lines starting with ``#`` are ignored.
    """

    def __init__(self, secrets: Sequence[CacheSecret]):
        if not secrets:
            raise CacheSecretError("a keyring needs at least one cache secret")
        ids = [s.secret_id for s in secrets]
        if len(set(ids)) != len(ids):
            raise CacheSecretError("a keyring holds the same cache secret twice")
        self._secrets = tuple(secrets)
        self._by_id = dict(zip(ids, self._secrets, strict=True))

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Parse the text form (class docstring).

        Raises:
            CacheSecretError: no secret, a malformed line (its number is named),
                or the same secret twice.
        """
        secrets = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                secrets.append(CacheSecret.parse(line))
            except CacheSecretError as exc:
                raise CacheSecretError(f"line {number}: {exc}") from exc
        return cls(secrets)

    def text(self) -> str:
        """The text form, newest first, ending in a newline."""
        return "".join(s.text() + "\n" for s in self._secrets)

    @property
    def current(self) -> CacheSecret:
        """The secret new writes use (the first)."""
        return self._secrets[0]

    def by_id(self, secret_id: bytes) -> CacheSecret | None:
        """The secret with :attr:`CacheSecret.secret_id` ``secret_id``, or None."""
        return self._by_id.get(secret_id)

    def __getitem__(self, index: int) -> CacheSecret:  # type: ignore[override]
        return self._secrets[index]

    def __len__(self) -> int:
        return len(self._secrets)

    def __iter__(self) -> Iterator[CacheSecret]:
        return iter(self._secrets)

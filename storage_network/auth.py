"""Publisher keys and signed write requests.

Writes to a node must be signed by a publisher key the node accepts; reads
are open.  A publisher key is an ed25519 key written as ``name:base64`` (the
same text form Nix uses for binary-cache keys: 32-byte public key, 64-byte
secret key = seed + public key), so one key file can sign both the Nix
``Sig:`` and the network writes.

A write request carries two headers::

    X-Nixshard-Date: <unix time, integer seconds>
    Authorization: Nixshard-Ed25519 <key name>:<base64 of a 64-byte signature>

The signature covers :func:`write_message`: the method, the request path,
the date and the SHA-256 of the body, so a signed request cannot be replayed
with another body or against another path, nor later than ``max_skew``
seconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .errors import AuthError

AUTH_SCHEME = "Nixshard-Ed25519"
DATE_HEADER = "X-Nixshard-Date"
MAX_SKEW_SECONDS = 300


@dataclass(frozen=True)
class PublisherKey:
    """A publisher's public key: ``name`` and the 32-byte ed25519 key."""

    name: str
    verify_key: VerifyKey

    def text(self) -> str:
        """The ``name:base64`` form of the key."""
        return f"{self.name}:{base64.b64encode(bytes(self.verify_key)).decode()}"


@dataclass(frozen=True)
class Publisher:
    """A publisher's secret key: ``name`` and the ed25519 signing key."""

    name: str
    signing_key: SigningKey

    @property
    def public(self) -> PublisherKey:
        """The matching :class:`PublisherKey`."""
        return PublisherKey(self.name, self.signing_key.verify_key)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte ed25519 signature of ``message``."""
        return self.signing_key.sign(message).signature


def _split_key_text(text: str, raw_len: tuple[int, ...]) -> tuple[str, bytes]:
    name, sep, b64 = text.strip().partition(":")
    if not sep or not name:
        raise AuthError(f"key {text[:40]!r} is not of the form name:base64")
    try:
        raw = base64.b64decode(b64, validate=True)
    except binascii.Error as exc:
        raise AuthError(f"key {name!r}: invalid base64: {exc}") from exc
    if len(raw) not in raw_len:
        want = " or ".join(map(str, raw_len))
        raise AuthError(f"key {name!r}: {len(raw)} bytes, expected {want}")
    return name, raw


def parse_publisher_key(text: str) -> PublisherKey:
    """Parse a public key ``name:base64(32 bytes)``.

    Raises:
        AuthError: the text is not a name, a colon and 32 base64-encoded bytes.
    """
    name, raw = _split_key_text(text, (32,))
    return PublisherKey(name, VerifyKey(raw))


def parse_publisher_secret(text: str) -> Publisher:
    """Parse a secret key ``name:base64(64 bytes: seed + public key)``.

    This is the file format of ``nix-store --generate-binary-cache-key``.

    Raises:
        AuthError: malformed text, or the public half does not match the seed.
    """
    name, raw = _split_key_text(text, (64,))
    signing_key = SigningKey(raw[:32])
    if bytes(signing_key.verify_key) != raw[32:]:
        raise AuthError(f"secret key {name!r}: public half does not match the seed")
    return Publisher(name, signing_key)


def write_message(method: str, path: str, date: int, body_sha256: bytes) -> bytes:
    """The bytes a publisher signs to authorise one write request."""
    return f"nixshard-write-v1\n{method.upper()}\n{path}\n{date}\n{body_sha256.hex()}".encode()


def sign_write(publisher: Publisher, method: str, path: str, body_sha256: bytes,
               now: float | None = None) -> dict[str, str]:
    """Return the headers that authorise a write of a body with ``body_sha256``."""
    date = int(time.time() if now is None else now)
    sig = publisher.sign(write_message(method, path, date, body_sha256))
    return {
        DATE_HEADER: str(date),
        "Authorization": f"{AUTH_SCHEME} {publisher.name}:{base64.b64encode(sig).decode()}",
    }


def verify_write(keys: dict[str, PublisherKey], method: str, path: str,
                 authorization: str | None, date: str | None, body_sha256: bytes,
                 now: float | None = None, max_skew: int = MAX_SKEW_SECONDS) -> PublisherKey:
    """Check a write request's signature; return the publisher key that made it.

    Args:
        keys: accepted publisher keys by name.
        authorization, date: the request's header values (``None`` when absent).

    Raises:
        AuthError: missing or malformed headers, a date more than ``max_skew``
            seconds away from now, an unknown key name, or a bad signature.
    """
    if not authorization or not date:
        raise AuthError("write without publisher signature (Authorization and "
                        f"{DATE_HEADER} headers required)")
    scheme, _, cred = authorization.partition(" ")
    if scheme != AUTH_SCHEME:
        raise AuthError(f"unsupported authorization scheme {scheme!r}, expected {AUTH_SCHEME}")
    name, sep, sig_b64 = cred.strip().partition(":")
    if not sep:
        raise AuthError("authorization credential is not name:base64-signature")
    try:
        when = int(date)
    except ValueError as exc:
        raise AuthError(f"{DATE_HEADER} {date!r} is not an integer") from exc
    current = time.time() if now is None else now
    if abs(current - when) > max_skew:
        raise AuthError(f"{DATE_HEADER} is {int(current - when)} s away from now (max {max_skew})")
    key = keys.get(name)
    if key is None:
        raise AuthError(f"publisher key {name!r} is not accepted here")
    try:
        sig = base64.b64decode(sig_b64, validate=True)
        key.verify_key.verify(write_message(method, path, when, body_sha256), sig)
    except (binascii.Error, BadSignatureError, ValueError) as exc:
        raise AuthError(f"bad signature by publisher key {name!r}") from exc
    return key


def sha256(data: bytes) -> bytes:
    """SHA-256 digest (32 bytes) of ``data``."""
    return hashlib.sha256(data).digest()

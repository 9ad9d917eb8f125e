"""Publisher keys and signed write requests.

Writes to a node must be signed by a publisher key the node accepts; reads
are open.  A publisher key is an ed25519 key written as ``name:base64`` (the
same text form Nix uses for binary-cache keys: 32-byte public key, 64-byte
secret key = seed + public key), so one key file can sign both the Nix
``Sig:`` and the network writes.

A write request carries four headers::

    X-Nixshard-Date: <unix time, integer seconds>
    X-Nixshard-Node: <id of the node the write is meant for>
    X-Nixshard-Nonce: <32 hex digits: 16 random bytes, new for every request>
    Authorization: Nixshard-Ed25519 <key name>:<base64 of a 64-byte signature>

The signature covers :func:`write_message`: the node id, the method, the
request path (with its query), the date, the nonce and the SHA-256 of the
body.  So a signed request cannot be replayed with another body, against
another path, against another node, nor later than ``max_skew`` seconds;
a node remembers every nonce it accepted for as long as its date stays
inside the window (``storage_node.replay``), so the same request sent again
to the same node is refused too.  The signature makes a captured write
useless, it does not hide it: node traffic is plain HTTP unless the node
serves TLS (``nixshard node --tls-cert/--tls-key``, an ``https://`` URL).

A node checks, in this order and before it reads any body byte
(:func:`parse_write_claim`): header syntax, the date window, the key name,
the node binding, the nonce's syntax and that it is not used; then, once
the body is in, the signature (:meth:`WriteClaim.verify`).

**Key roles.**  Every accepted key may write (shards, records, touches).
Deleting (``DELETE`` of a shard or record, and a *tombstone*, the signed
deletion of a record) needs the maintainer role: a network file that lists
``maintainers`` gives it to those keys only (:attr:`PublisherKey.may_delete`
is False for the others); a file without ``maintainers`` gives it to every
publisher, as before roles existed.  :func:`with_roles` sets the role of a
key set, :func:`check_may_delete` refuses a key without it and
:func:`check_may_store_tombstone` a tombstone neither sealed nor sent by a
maintainer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from storage_network.errors import AuthError, MissingSignatureError

AUTH_SCHEME = "Nixshard-Ed25519"
DATE_HEADER = "X-Nixshard-Date"
MAX_SKEW_SECONDS = 300


@dataclass(frozen=True)
class PublisherKey:
    """A publisher's public key: ``name``, the 32-byte ed25519 key and its role.

    Attributes:
        may_delete: the key may delete shards and records and sign tombstones
            (the maintainer role).  False only for a key of a key set that
            lists maintainers and not this key (see :func:`with_roles`); a
            key parsed alone has it.
    """

    name: str
    verify_key: VerifyKey
    may_delete: bool = True

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


NODE_HEADER = "X-Nixshard-Node"
NONCE_HEADER = "X-Nixshard-Nonce"
NONCE_BYTES = 16
_NONCE_RE = re.compile(r"\A[0-9a-f]{32}\Z")


def write_message(node_id: str, method: str, path: str, date: int, nonce: str,
                  body_sha256: bytes) -> bytes:
    """The bytes a publisher signs to authorise one write request to node ``node_id``."""
    return (f"nixshard-write-v2\n{node_id}\n{method.upper()}\n{path}\n{date}\n{nonce}\n"
            f"{body_sha256.hex()}").encode()


def sign_write(publisher: Publisher, node_id: str, method: str, path: str,
               body_sha256: bytes, now: float | None = None,
               nonce: str | None = None) -> dict[str, str]:
    """Return the headers that authorise one write of a body with ``body_sha256``
    to node ``node_id`` (a fresh random nonce unless ``nonce`` is given: tests only)."""
    date = int(time.time() if now is None else now)
    nonce = secrets.token_hex(NONCE_BYTES) if nonce is None else nonce
    sig = publisher.sign(write_message(node_id, method, path, date, nonce, body_sha256))
    return {
        DATE_HEADER: str(date),
        NODE_HEADER: node_id,
        NONCE_HEADER: nonce,
        "Authorization": f"{AUTH_SCHEME} {publisher.name}:{base64.b64encode(sig).decode()}",
    }


@dataclass(frozen=True)
class WriteClaim:
    """The checked headers of one signed write, before its signature is checked.

    Attributes:
        key: the accepted publisher key the request names.
        node_id: the node the request is bound to (already checked to be this node).
        date: the signed unix time (seconds), within the allowed skew.
        nonce: 32 lowercase hex digits (16 random bytes).
        signature: the 64-byte ed25519 signature.
    """

    key: PublisherKey
    node_id: str
    date: int
    nonce: str
    signature: bytes

    def verify(self, method: str, path: str, body_sha256: bytes) -> PublisherKey:
        """Check the signature over ``method path``, the claim and the body digest.

        Raises:
            AuthError: the signature does not verify.
        """
        message = write_message(self.node_id, method, path, self.date, self.nonce, body_sha256)
        try:
            self.key.verify_key.verify(message, self.signature)
        except (BadSignatureError, ValueError) as exc:
            raise AuthError(f"bad signature by publisher key {self.key.name!r}") from exc
        return self.key


def parse_write_claim(keys: Mapping[str, PublisherKey], node_id: str,
                      headers: Mapping[str, str], now: float | None = None,
                      max_skew: int = MAX_SKEW_SECONDS) -> WriteClaim:
    """Check everything about a signed write that needs no body byte: header
    syntax, the date window, the key name, the node binding and the nonce syntax.

    Args:
        keys: accepted publisher keys by name.
        node_id: the id of the node checking (a write bound to another node is refused).
        headers: the request headers (``Authorization``, :data:`DATE_HEADER`,
            :data:`NODE_HEADER`, :data:`NONCE_HEADER`).

    Raises:
        MissingSignatureError: Authorization or the date header is absent.
        AuthError: anything else malformed, a date more than ``max_skew``
            seconds away, an unknown key name, another node's id.
    """
    authorization, date = headers.get("Authorization"), headers.get(DATE_HEADER)
    missing = [h for h, v in (("Authorization", authorization), (DATE_HEADER, date)) if not v]
    if missing or not authorization or not date:
        plural = "s" if len(missing) > 1 else ""
        raise MissingSignatureError("write without publisher signature: missing "
                                    f"{' and '.join(missing)} header{plural}")
    scheme, _, cred = authorization.partition(" ")
    if scheme != AUTH_SCHEME:
        raise AuthError(f"unsupported authorization scheme {scheme[:40]!r}, "
                        f"expected {AUTH_SCHEME}")
    name, sep, sig_b64 = cred.strip().partition(":")
    if not sep:
        raise AuthError("authorization credential is not name:base64-signature")
    if not date.isascii() or not date.isdigit() or len(date) > 12:
        raise AuthError(f"{DATE_HEADER} {date[:40]!r} is not an integer")
    when = int(date)
    current = time.time() if now is None else now
    if abs(current - when) > max_skew:
        raise AuthError(f"{DATE_HEADER} is {int(current - when)} s away from now (max {max_skew})")
    key = keys.get(name)
    if key is None:
        raise AuthError(f"publisher key {name[:80]!r} is not accepted here")
    bound = headers.get(NODE_HEADER)
    if bound != node_id:
        raise AuthError(f"write is signed for node {str(bound)[:80]!r}, this is node {node_id!r}"
                        if bound else f"write carries no {NODE_HEADER} header")
    nonce = headers.get(NONCE_HEADER) or ""
    if not _NONCE_RE.match(nonce):
        raise AuthError(f"{NONCE_HEADER} must be 32 lowercase hex digits, got {nonce[:80]!r}")
    try:
        signature = base64.b64decode(sig_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AuthError(f"signature by publisher key {name!r} is not base64") from exc
    if len(signature) != 64:
        raise AuthError(f"signature by publisher key {name!r} has {len(signature)} bytes, not 64")
    return WriteClaim(key, node_id, when, nonce, signature)


def verify_write(keys: Mapping[str, PublisherKey], node_id: str, method: str, path: str,
                 headers: Mapping[str, str], body_sha256: bytes, now: float | None = None,
                 max_skew: int = MAX_SKEW_SECONDS) -> WriteClaim:
    """:func:`parse_write_claim` then :meth:`WriteClaim.verify`; returns the claim.

    Raises:
        MissingSignatureError, AuthError: as those two.
    """
    claim = parse_write_claim(keys, node_id, headers, now, max_skew)
    claim.verify(method, path, body_sha256)
    return claim


def with_roles(keys: Mapping[str, PublisherKey],
               maintainers: Collection[str] | None) -> dict[str, PublisherKey]:
    """``keys`` (by name) with their role set: each key named in ``maintainers`` may
    delete and the others may not; with ``maintainers`` None (no roles listed) every
    key may delete.  Names in ``maintainers`` that ``keys`` lacks are ignored."""
    return {name: replace(key, may_delete=maintainers is None or name in maintainers)
            for name, key in keys.items()}


def check_may_delete(key: PublisherKey, what: str) -> None:
    """Refuse ``what`` (e.g. ``"delete shards"``) for a key without the maintainer role.

    Raises:
        AuthError: ``key.may_delete`` is False; the message names the key and says it
            lacks the maintainer role.
    """
    if not key.may_delete:
        raise AuthError(f"key {key.name!r} lacks the maintainer role: it may write shards "
                        f"and records but not {what}; deletes need a key listed under "
                        f"`maintainers` in the network file (docs/keys.md)")


TOMBSTONE_WHAT = "sign tombstones (record deletions)"
"""What :func:`check_may_store_tombstone` says a key without the role may not do."""


def check_may_store_tombstone(signer: PublisherKey, sender_may_delete: bool) -> None:
    """Refuse to store a tombstone unless a maintainer sealed it or sends it.

    ``signer`` sealed the tombstone; ``sender_may_delete`` says whether the key
    that sends it (signs the write) has the maintainer role (False for a key the
    network does not list).  A maintainer's tombstone may be copied by any
    accepted key (a gateway's read repair deletes nothing a maintainer did not),
    and a maintainer may copy any valid tombstone (repair restoring one sealed
    before roles existed, or by a maintainer key since moved to ``publishers``);
    a key without the role can neither seal one that nodes take nor send its own.

    Raises:
        AuthError: neither key has the maintainer role (:func:`check_may_delete`'s
            message, for ``signer``).
    """
    if not sender_may_delete:
        check_may_delete(signer, TOMBSTONE_WHAT)


def sha256(data: bytes) -> bytes:
    """SHA-256 digest (32 bytes) of ``data``."""
    return hashlib.sha256(data).digest()

"""A node's id, derived from its ed25519 public key.

``node_id_for_key(key) = "node-" + the first 26 characters of the lower-case
RFC 4648 base32 of SHA-256(key)`` (130 bits of the digest; 31 characters in
all), so an id names one key and a node cannot take another node's id (and
with it that node's place in the rendezvous ranking).  The form matches
:data:`storage_network.config.NODE_ID_RE`; it never collides with the
``node-N`` ids of network files, which are shorter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from storage_network.errors import MapError

NODE_ID_PREFIX = "node-"
NODE_ID_HASH_CHARS = 26
PUBLIC_KEY_BYTES = 32


def node_id_for_key(public_key: bytes) -> str:
    """The node id of the 32-byte ed25519 ``public_key`` (see the module docstring).

    Raises:
        MapError: ``public_key`` is not 32 bytes.
    """
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise MapError(f"a node key is {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}")
    digest = base64.b32encode(hashlib.sha256(public_key).digest()).decode().lower()
    return NODE_ID_PREFIX + digest[:NODE_ID_HASH_CHARS]


def decode_node_key(text: str) -> bytes:
    """The 32 bytes of a node public key written as standard base64 (44 characters).

    Raises:
        MapError: not base64, or not 32 bytes.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MapError(f"node public key {text[:60]!r} is not base64: {exc}") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise MapError(f"node public key {text[:60]!r} is {len(raw)} bytes, "
                       f"expected {PUBLIC_KEY_BYTES}")
    return raw

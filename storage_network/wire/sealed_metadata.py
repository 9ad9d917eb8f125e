"""Sealed record metadata: what a private cache's record hides from the nodes.

In a private cache (:mod:`storage_network.coding.sealing`) a record's
metadata field holds, instead of the metadata itself (to nixshard: the
narinfo)::

    b"NXSP" | u8 version=1 | secret id (8) | sealed(plaintext)

    plaintext = u32 metadata length | metadata
              | chunk count x (chunk key (32) | u32 uncompressed size)

sealed under the secret's metadata key (:func:`~storage_network.coding.sealing.seal`,
AES-256-GCM), with the additional data ``b"nixshard-sealed-metadata\\n" |
keyed record key | SHA-256 of the manifest's bytes``: the sealed part
cannot be moved to another key or manifest.  The record around it stays
signed by the publisher, so nodes still refuse unsigned writes, and its
manifest (keyed chunk ids, stripe roots, stored sizes) stays readable by
audit, repair and gc, which need no secret.

All integers are big-endian.
"""

from __future__ import annotations

import hashlib
import struct

from storage_network.coding.sealing import SECRET_ID_BYTES, CacheSecret, Keyring, seal, unseal
from storage_network.errors import RecordError, SealError
from storage_network.wire.manifest import Manifest

MAGIC = b"NXSP"
VERSION = 1
_HEAD = len(MAGIC) + 1 + SECRET_ID_BYTES
_SECRET = struct.Struct(">32sI")
_LEN = struct.Struct(">I")


def _aad(record_key: str, manifest: Manifest) -> bytes:
    return (b"nixshard-sealed-metadata\n" + record_key.encode()
            + hashlib.sha256(manifest.encode()).digest())


def is_sealed(metadata: bytes) -> bool:
    """True when record ``metadata`` is sealed metadata (starts with :data:`MAGIC`)."""
    return metadata.startswith(MAGIC)


def seal_metadata(secret: CacheSecret, record_key: str, metadata: bytes,
                  manifest: Manifest) -> bytes:
    """The sealed form of ``metadata`` and ``manifest``'s chunk keys and sizes.

    Args:
        record_key: the keyed record key the record is written under.
        manifest: a sealed manifest whose refs carry their keys.

    Raises:
        ValueError: the manifest is not sealed, or a chunk has no key (a bug).
    """
    if not manifest.sealed or any(len(c.key) != 32 for c in manifest.chunks):
        raise ValueError("seal_metadata needs a sealed manifest with every chunk key")
    plain = b"".join([_LEN.pack(len(metadata)), metadata,
                      *(_SECRET.pack(c.key, c.size) for c in manifest.chunks)])
    return (MAGIC + bytes([VERSION]) + secret.secret_id
            + seal(secret.metadata_key, plain, _aad(record_key, manifest)))


def open_metadata(keyring: Keyring, record_key: str, metadata: bytes,
                  manifest: Manifest) -> tuple[bytes, Manifest]:
    """Open sealed ``metadata`` of the record under ``record_key`` (keyed).

    Returns:
        The plain metadata and ``manifest`` with every chunk's key and size
        put back (:meth:`Manifest.with_secrets`).

    Raises:
        SealError: not sealed metadata, a secret the keyring lacks, or it does
            not open (another secret, altered, moved to another key or manifest).
        RecordError: it opens but is malformed (a publisher bug).
    """
    if not is_sealed(metadata) or len(metadata) < _HEAD:
        raise SealError(f"record {record_key}: its metadata is not sealed")
    if metadata[len(MAGIC)] != VERSION:
        raise SealError(f"record {record_key}: sealed metadata version "
                        f"{metadata[len(MAGIC)]} is not {VERSION}")
    secret_id = metadata[len(MAGIC) + 1:_HEAD]
    secret = keyring.by_id(secret_id)
    if secret is None:
        raise SealError(f"record {record_key} is sealed under cache secret {secret_id.hex()}, "
                        "which the keyring does not hold")
    try:
        plain = unseal(secret.metadata_key, memoryview(metadata)[_HEAD:],
                       _aad(record_key, manifest))
    except SealError as exc:
        raise SealError(f"record {record_key}: {exc}") from exc
    if len(plain) < _LEN.size:
        raise RecordError(f"record {record_key}: sealed metadata truncated")
    (size,) = _LEN.unpack_from(plain)
    start = _LEN.size + size
    if len(plain) != start + _SECRET.size * len(manifest.chunks):
        raise RecordError(f"record {record_key}: sealed metadata of {len(plain)} bytes does "
                          f"not hold {size} bytes and {len(manifest.chunks)} chunk keys")
    secrets = [_SECRET.unpack_from(plain, start + i * _SECRET.size)
               for i in range(len(manifest.chunks))]
    return plain[_LEN.size:start], manifest.with_secrets(secrets)

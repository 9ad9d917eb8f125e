"""Sealed record metadata: what a private cache's record hides from the nodes.

In a private cache (:mod:`storage_network.coding.sealing`) a record's
metadata field holds, instead of the metadata itself (to nixshard: the
narinfo), version 2 (written since records carry their links)::

    b"NXSP" | u8 version=2 | secret id (8)
            | u8 flags (bit 0: pin) | u16 count | count x 32 ASCII characters (links)
            | sealed(plaintext)

or version 1 (still read, no longer written)::

    b"NXSP" | u8 version=1 | secret id (8) | sealed(plaintext)

    plaintext = u32 metadata length | metadata
              | chunk count x (chunk key (32) | u32 uncompressed size)

sealed under the secret's metadata key (:func:`~storage_network.coding.sealing.seal`,
AES-256-GCM), with the additional data ``b"nixshard-sealed-metadata\\n" |
keyed record key | SHA-256 of the manifest's bytes``, followed in version 2
by the whole prefix before the sealed part (magic to the last link): the
sealed part cannot be moved to another key, manifest or prefix.  The record
around it stays signed by the publisher, so nodes still refuse unsigned
writes, and its manifest (keyed chunk ids, stripe roots, stored sizes) stays
readable by audit, repair and gc, which need no secret.

The *links* of version 2 are in the clear for garbage collection without the
secret (:func:`public_links`, docs/gc.md): the keyed record keys (32
characters of :data:`~storage_network.wire.record.RECORD_KEY_RE`) of the
records this one needs while it stays, and whether it is a pin (a record
that never expires and keeps what it links).  They name keyed keys only,
never plain ones: nodes learn which records need which, not what they are.
Version 1 records carry none (:func:`public_links` answers None): their
links can be read only by opening them.

All integers are big-endian.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace

from storage_network.coding.sealing import SECRET_ID_BYTES, CacheSecret, Keyring, seal, unseal
from storage_network.errors import RecordError, SealError
from storage_network.wire.manifest import Manifest
from storage_network.wire.record import RECORD_KEY_RE, Record

MAGIC = b"NXSP"
VERSION = 2
"""The version :func:`seal_metadata` writes."""
VERSION_NO_LINKS = 1
"""The first version (no links in the clear), still opened."""
FLAG_PIN = 0x01
MAX_LINKS = 0xFFFF
"""The most links one record carries (the u16 count)."""
LINK_CHARS = 32
_HEAD = len(MAGIC) + 1 + SECRET_ID_BYTES
_LINKS_HEAD = struct.Struct(">BH")
_SECRET = struct.Struct(">32sI")
_LEN = struct.Struct(">I")


def _aad(record_key: str, manifest: Manifest, prefix: bytes = b"") -> bytes:
    return (b"nixshard-sealed-metadata\n" + record_key.encode()
            + hashlib.sha256(manifest.encode()).digest() + prefix)


def is_sealed(metadata: bytes) -> bool:
    """True when record ``metadata`` is sealed metadata (starts with :data:`MAGIC`)."""
    return metadata.startswith(MAGIC)


@dataclass(frozen=True)
class _Prefix:
    """The clear part of sealed metadata: its version, secret id, flags, raw links
    and where the sealed part starts (``end``)."""

    version: int
    secret_id: bytes
    flags: int
    links: bytes
    end: int


def _prefix(metadata: bytes | memoryview, where: str) -> _Prefix:
    """Split sealed ``metadata`` (lengths only; nothing of the links is checked).

    Raises:
        SealError: not sealed, an unknown version, or truncated.
    """
    if not bytes(metadata[:len(MAGIC)]) == MAGIC or len(metadata) < _HEAD:
        raise SealError(f"{where}: its metadata is not sealed")
    version = metadata[len(MAGIC)]
    secret_id = bytes(metadata[len(MAGIC) + 1:_HEAD])
    if version == VERSION_NO_LINKS:
        return _Prefix(version, secret_id, 0, b"", _HEAD)
    if version != VERSION:
        raise SealError(f"{where}: sealed metadata version {version} is not "
                        f"{VERSION_NO_LINKS} or {VERSION}")
    if len(metadata) < _HEAD + _LINKS_HEAD.size:
        raise SealError(f"{where}: sealed metadata truncated in its links")
    flags, count = _LINKS_HEAD.unpack_from(metadata, _HEAD)
    start = _HEAD + _LINKS_HEAD.size
    end = start + count * LINK_CHARS
    if len(metadata) < end:
        raise SealError(f"{where}: sealed metadata of {len(metadata)} bytes does not hold "
                        f"its {count} links")
    return _Prefix(version, secret_id, flags, bytes(metadata[start:end]), end)


def _links(prefix: _Prefix, where: str) -> tuple[tuple[str, ...], bool]:
    """The links and pin flag of a version 2 prefix, checked.

    Raises:
        RecordError: unknown flag bits, or a link that is not a record key.
    """
    if prefix.flags & ~FLAG_PIN:
        raise RecordError(f"{where}: sealed metadata with unknown flags {prefix.flags:#04x}")
    links = []
    for i in range(0, len(prefix.links), LINK_CHARS):
        raw = prefix.links[i:i + LINK_CHARS]
        text = raw.decode("ascii", errors="replace")
        if not RECORD_KEY_RE.fullmatch(text):
            raise RecordError(f"{where}: sealed metadata link {i // LINK_CHARS} is not a "
                              "record key")
        links.append(text)
    return tuple(links), bool(prefix.flags & FLAG_PIN)


def sealing_secret_id(metadata: bytes) -> bytes | None:
    """The id of the cache secret that sealed ``metadata`` (in the clear in every
    version); None when it is not sealed metadata (of a known version, whole up to
    its sealed part)."""
    try:
        return _prefix(metadata, "record").secret_id
    except SealError:
        return None


def public_links(metadata: bytes) -> tuple[tuple[str, ...], bool] | None:
    """What sealed ``metadata`` says in the clear: the keyed keys of the records its
    record needs and whether it is a pin; no secret needed.

    Returns:
        ``(links, pin)`` for version 2, None for version 1 sealed metadata (its
        links are sealed) and for metadata that is not sealed.

    Raises:
        RecordError: version 2 metadata that is truncated or malformed (unknown
            flags, a link that is not a record key), or an unknown version
            (a :class:`SealError`).
    """
    if not is_sealed(metadata):
        return None
    prefix = _prefix(metadata, "record")
    if prefix.version == VERSION_NO_LINKS:
        return None
    return _links(prefix, "record")


def seal_metadata(secret: CacheSecret, record_key: str, metadata: bytes,
                  manifest: Manifest, *, links: Sequence[str] = (),
                  pin: bool = False) -> bytes:
    """The sealed form (version 2) of ``metadata`` and ``manifest``'s chunk keys and
    sizes, with ``links`` and ``pin`` in the clear.

    Args:
        record_key: the keyed record key the record is written under.
        manifest: a sealed manifest whose refs carry their keys.
        links: keyed record keys of the records this one needs, written in the
            given order (the caller sorts and removes duplicates).
        pin: the record is a pin.

    Raises:
        ValueError: the manifest is not sealed, a chunk has no key, a link is
            not a record key, or more than :data:`MAX_LINKS` links (a bug).
    """
    if not manifest.sealed or any(len(c.key) != 32 for c in manifest.chunks):
        raise ValueError("seal_metadata needs a sealed manifest with every chunk key")
    if len(links) > MAX_LINKS:
        raise ValueError(f"a record carries at most {MAX_LINKS} links, got {len(links)}")
    bad = [link for link in links if not RECORD_KEY_RE.fullmatch(link)]
    if bad:
        raise ValueError(f"{len(bad)} links are not record keys (32 of 0-9 a-z)")
    prefix = (MAGIC + bytes([VERSION]) + secret.secret_id
              + _LINKS_HEAD.pack(FLAG_PIN if pin else 0, len(links))
              + "".join(links).encode("ascii"))
    plain = b"".join([_LEN.pack(len(metadata)), metadata,
                      *(_SECRET.pack(c.key, c.size) for c in manifest.chunks)])
    return prefix + seal(secret.metadata_key, plain, _aad(record_key, manifest, prefix))


def open_metadata(keyring: Keyring, record_key: str, metadata: bytes,
                  manifest: Manifest) -> tuple[bytes, Manifest]:
    """Open sealed ``metadata`` (version 1 or 2) of the record under ``record_key`` (keyed).

    Returns:
        The plain metadata and ``manifest`` with every chunk's key and size
        put back (:meth:`Manifest.with_secrets`).  The links of version 2 are
        :func:`public_links`.

    Raises:
        SealError: not sealed metadata, an unknown version, truncated, a secret
            the keyring lacks, or it does not open (another secret, altered
            (links and flags included), moved to another key or manifest).
        RecordError: it opens but is malformed (a publisher bug).
    """
    where = f"record {record_key}"
    prefix = _prefix(metadata, where)
    secret = keyring.by_id(prefix.secret_id)
    if secret is None:
        raise SealError(f"{where} is sealed under cache secret {prefix.secret_id.hex()}, "
                        "which the keyring does not hold")
    aad = (_aad(record_key, manifest) if prefix.version == VERSION_NO_LINKS
           else _aad(record_key, manifest, bytes(metadata[:prefix.end])))
    try:
        plain = unseal(secret.metadata_key, memoryview(metadata)[prefix.end:], aad)
    except SealError as exc:
        raise SealError(f"{where}: {exc}") from exc
    if prefix.version != VERSION_NO_LINKS:
        _links(prefix, where)
    if len(plain) < _LEN.size:
        raise RecordError(f"{where}: sealed metadata truncated")
    (size,) = _LEN.unpack_from(plain)
    start = _LEN.size + size
    if len(plain) != start + _SECRET.size * len(manifest.chunks):
        raise RecordError(f"{where}: sealed metadata of {len(plain)} bytes does "
                          f"not hold {size} bytes and {len(manifest.chunks)} chunk keys")
    secrets = [_SECRET.unpack_from(plain, start + i * _SECRET.size)
               for i in range(len(manifest.chunks))]
    return plain[_LEN.size:start], manifest.with_secrets(secrets)


def open_sealed_record(keyring: Keyring, record: Record, key: str | None = None) -> Record:
    """``record`` of a private cache (stored under its keyed key) opened
    (:func:`open_metadata`): its plain metadata, and its manifest with every
    chunk's key and size put back.

    Args:
        key: the key the opened Record carries (a reader's plain key); None:
            ``record.key``, the keyed key it is stored under.

    Raises:
        SealError: the record's manifest is not sealed, or its metadata is not
            sealed or does not open (as :func:`open_metadata`).
        RecordError: it opens but is malformed (a publisher bug).
    """
    if not record.manifest.sealed:
        plain = "" if key is None else f" (plain key {key})"
        raise SealError(f"record {record.key}{plain} is not sealed")
    metadata, manifest = open_metadata(keyring, record.key, record.metadata, record.manifest)
    return replace(record, key=record.key if key is None else key,
                   metadata=metadata, manifest=manifest)

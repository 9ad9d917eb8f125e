"""A store path's record: narinfo to record and back, the record key and the NAR URL.

The record of a store path (:class:`storage_network.Record`) is signed by
the publisher and stored under :func:`record_key` of the path's hash part;
its metadata is the narinfo text (format: Nix ``src/libstore/nar-info.cc``)
and its manifest lists the chunks of the NAR.  The narinfo as stored says
``Compression: zstd``, ``URL: nar/<store hash>-<nix32 NarHash>.nar.zst``
(:func:`nar_url`), ``FileSize`` = the stored zstd frames' total and no
``FileHash`` (the frames are made per chunk, there is no single file to
hash).  Its ``Sig:`` lines stay valid whatever those fields say: the Nix
fingerprint (``src/libstore/path-info.cc``) covers none of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

from nix_formats import nix32
from nix_formats.errors import NixFormatError
from nix_formats.hash import format_sha256_nix32
from nix_formats.narinfo import NarInfo
from nix_formats.store_path import StorePath
from storage_network import Manifest, Record

from .errors import RecordContentError
from .publishing import RecordContent

__all__ = [
    "STORED_COMPRESSION",
    "nar_url",
    "narinfo_from_record",
    "narinfo_links",
    "narinfo_record",
    "new_narinfo",
    "record_key",
    "stored_narinfo",
]

#: The ``Compression:`` of every narinfo in the network: the NAR is served as the
#: chunks' zstd frames back to back, which is one valid ``.nar.zst``.
STORED_COMPRESSION = "zstd"


def record_key(hash_part: str) -> str:
    """The record key of the store path whose hash part is ``hash_part``: the hash part itself.

    Args:
        hash_part: the 32 nix32 characters of ``/nix/store/<hash>-<name>``
            (Nix ``src/libstore/path.cc``), already validated by the caller.

    Returns:
        The key (32 characters) the record is signed for, stored under and
        ranked by (its replica window on the network).
    """
    return hash_part


def derived_record_key(domain: bytes, text: str) -> str:
    """The record key of a record that is not a narinfo (a build log, a pin, a realisation).

    Args:
        domain: the kind's own prefix (``b"nixshard pin"``); a NUL byte follows it.
        text: what names the record within its kind (hashed as UTF-8).

    Returns:
        32 nix32 characters: the first 160 bits of SHA-256 over ``domain``, a NUL
        byte and ``text``, so never the hash part of a store path, nor another
        kind's key, by design.
    """
    return nix32.encode(hashlib.sha256(domain + b"\0" + text.encode()).digest())[:32]


def nar_url(store_path: StorePath, nar_hash: bytes) -> str:
    """The narinfo ``URL:`` of a NAR in the network.

    Args:
        store_path: the path the NAR is of.
        nar_hash: the 32-byte SHA-256 digest of the NAR.

    Returns:
        ``nar/<store hash>-<52 nix32 characters of NarHash>.nar.zst``.
    """
    return f"nar/{store_path.hash_part}-{format_sha256_nix32(nar_hash)[7:]}.nar.zst"


def new_narinfo(store_path: StorePath, nar_hash: bytes, nar_size: int, manifest: Manifest, *,
                references: Sequence[str] = (), deriver: str | None = None,
                ca: str | None = None) -> NarInfo:
    """The unsigned narinfo of a NAR stored as ``manifest`` (see the module docstring).

    Args:
        store_path: the path described.
        nar_hash: the 32-byte SHA-256 digest of the NAR.
        nar_size: the NAR's size in bytes.
        manifest: the stored payload (``FileSize`` is its ``frames_size``).
        references: full store paths the path refers to (written as basenames).
        deriver: the full ``.drv`` store path, or None.
        ca: the content address text (``CA:``), or None.

    Raises:
        StorePathError: a reference or the deriver is not a store path.
    """
    return NarInfo(
        store_path=store_path,
        url=nar_url(store_path, nar_hash),
        compression=STORED_COMPRESSION,
        file_hash=None,
        file_size=manifest.frames_size,
        nar_hash=format_sha256_nix32(nar_hash),
        nar_size=nar_size,
        references=[StorePath.parse(r).basename for r in references],
        deriver=StorePath.parse(deriver).basename if deriver else None,
        sigs=[],
        ca=ca,
    )


def stored_narinfo(narinfo: NarInfo, manifest: Manifest) -> NarInfo:
    """``narinfo`` as the network stores it, its NAR stored as ``manifest``.

    A copy with ``URL`` (:func:`nar_url`), ``Compression``, ``FileHash`` (none)
    and ``FileSize`` (``manifest.frames_size`` bytes) replaced; every other
    field, ``Sig:`` lines included, is kept.

    Raises:
        NarInfoError: its NarHash is not a sha256 hash.
    """
    return dataclasses.replace(
        narinfo, url=nar_url(narinfo.store_path, narinfo.nar_hash_digest()),
        compression=STORED_COMPRESSION, file_hash=None, file_size=manifest.frames_size,
        sigs=list(narinfo.sigs), references=list(narinfo.references))


def narinfo_links(narinfo: NarInfo) -> tuple[str, ...]:
    """The record keys of the paths ``narinfo``'s store path references, itself left
    out, sorted (what its record needs while it stays, docs/gc.md).

    Raises:
        StorePathError: a reference is not a store-path basename.
    """
    own = narinfo.store_path.hash_part
    refs = {StorePath.parse_basename(ref).hash_part for ref in narinfo.references}
    return tuple(sorted(record_key(h) for h in refs if h != own))


def narinfo_record(narinfo: NarInfo) -> RecordContent:
    """The key, metadata and links of the record of ``narinfo``'s store path.

    Returns:
        :func:`record_key` of its hash part, the narinfo text as UTF-8, and
        :func:`narinfo_links` (the References' record keys, itself left out).

    Raises:
        NarInfoError: the narinfo cannot be rendered (see :meth:`NarInfo.render`).
        StorePathError: a reference is not a store-path basename.
    """
    return RecordContent(record_key(narinfo.store_path.hash_part), narinfo.render().encode(),
                         links=narinfo_links(narinfo))


def narinfo_from_record(hash_part: str, record: Record) -> tuple[NarInfo, str]:
    """The narinfo a record holds, checked against its key and manifest.

    Args:
        hash_part: the store-path hash part the record was looked up by.
        record: a record opened and signature-checked by the network client.

    Returns:
        The parsed narinfo and its text exactly as stored.

    Raises:
        RecordContentError: the metadata is not UTF-8 or not a narinfo, the
            narinfo describes another path, or its NarSize is not the size
            of the payload the manifest lists.
    """
    try:
        text = record.metadata.decode("utf-8")
        narinfo = NarInfo.parse(text)
    except (UnicodeDecodeError, NixFormatError) as exc:
        raise RecordContentError(f"record {hash_part} holds a malformed narinfo: {exc}") from exc
    if narinfo.store_path.hash_part != hash_part:
        raise RecordContentError(f"record {hash_part} describes {narinfo.store_path.path}")
    if narinfo.nar_size != record.manifest.size:
        raise RecordContentError(f"record {hash_part}: NarSize {narinfo.nar_size} but manifest "
                                 f"holds {record.manifest.size} bytes")
    return narinfo, text

"""Ingest: a NAR from a staged file (an upload, an upstream download) into the network.

One pass over the file: decompress it by the narinfo's ``Compression``,
feed every byte to :class:`nix_formats.nar_parser.NarParser` (which hashes it and
checks the NAR grammar) and into the network
(:func:`nix_records.publishing.store_then_publish`).  Decompression is
capped at the narinfo's ``NarSize``: a file that decompresses to more is
refused as soon as one byte past it is decoded (a "decompression bomb"
costs a few kilobytes of output, not gigabytes).  Only when the NAR parses
and its NarHash and NarSize are the narinfo's is the record published (the
commit point).  A rejected NAR leaves at most unreferenced shards, which
readers never see and gc removes.

The stored narinfo is the given one in its stored form
(:func:`nix_records.narinfo_record.stored_narinfo`: ``URL`` the gateway's
own NAR name, ``Compression: zstd``, ``FileSize`` the stored frames' size,
no ``FileHash``); its ``Sig:`` lines stay valid because the fingerprint
covers none of those fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from nix_formats.compression import decompress
from nix_formats.errors import DecompressedTooLargeError, NixFormatError
from nix_formats.hash import format_sha256_nix32
from nix_formats.nar_parser import NarParser
from nix_formats.narinfo import NarInfo
from nix_records import (
    RecordContent,
    StoredPayload,
    narinfo_record,
    store_then_publish,
    stored_narinfo,
)
from storage_network import NetworkClient, Publisher

from .errors import UploadRejectedError
from .staging import file_pieces


def _checked_nar(path: Path, compression: str, nar_size: int,
                 parser: NarParser) -> Iterator[bytes]:
    """The NAR inside ``path`` (at most ``nar_size`` bytes); every piece is fed to ``parser``
    on the way.

    Raises:
        NixFormatError: from :func:`decompress` (DecompressedTooLargeError past
            ``nar_size``) or from ``parser``.
    """
    for piece in decompress(compression, file_pieces(path), max_output=nar_size):
        parser.feed(piece)
        yield piece


async def ingest_nar(net: NetworkClient, publisher: Publisher, narinfo: NarInfo,
                     path: Path) -> NarInfo:
    """Store the NAR in ``path`` (compressed as ``narinfo.compression``) and its record.

    Returns the narinfo as stored (see the module docstring).

    Raises:
        UploadRejectedError: the file does not decompress, decompresses to
            more than ``narinfo.nar_size`` bytes (refused as soon as that is
            passed), is not a valid NAR, or its NarHash / NarSize differ from
            ``narinfo`` (no record is written).
        StorageNetworkError: a node refused a shard or the record.
    """
    where = narinfo.store_path.path
    try:
        want_hash = narinfo.nar_hash_digest()
    except NixFormatError as exc:
        raise UploadRejectedError(f"{where}: {exc}") from exc
    parser = NarParser()
    stored: NarInfo | None = None

    def check(payload: StoredPayload) -> RecordContent:
        nonlocal stored
        nar = parser.finish()
        if nar.sha256 != want_hash or nar.nar_size != narinfo.nar_size:
            assert nar.sha256 is not None
            raise UploadRejectedError(
                f"{where}: the NAR has {format_sha256_nix32(nar.sha256)} and {nar.nar_size} "
                f"bytes, the narinfo says {narinfo.nar_hash} and {narinfo.nar_size} bytes")
        stored = stored_narinfo(narinfo, payload.manifest)
        return narinfo_record(stored)

    try:
        await store_then_publish(
            net, publisher, _checked_nar(path, narinfo.compression, narinfo.nar_size, parser),
            check)
    except DecompressedTooLargeError as exc:
        raise UploadRejectedError(f"{where}: the NAR is larger than its NarSize of "
                                  f"{narinfo.nar_size} bytes ({exc})") from exc
    except NixFormatError as exc:
        raise UploadRejectedError(f"{where}: the uploaded NAR is not valid: {exc}") from exc
    assert stored is not None
    return stored

"""Build logs in the network: ``nix store copy-log --to http://...`` and ``nix log``.

Nix (``src/libstore/binary-cache-store.cc``, ``addBuildLog`` / ``getBuildLog``)
keeps the log of ``/nix/store/<drv>`` at ``log/<drv basename>``, uncompressed
text.  The gateway stores a log as a payload of its own (chunks and shards,
like a NAR) under a signed record whose key is derived from the ``.drv``
name (:func:`log_record_key`), so every gateway on the network serves it.
The record's metadata is :data:`LOG_MAGIC` followed by the ``.drv``
basename; a reader checks both before serving.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from nix_formats import nix32
from nix_formats.errors import StorePathError
from nix_formats.store_path import StorePath
from storage_network import NetworkClient, Publisher, publish_record, store_payload

from .errors import BadRequestError
from .staging import file_pieces

LOG_MAGIC = b"nixshard-build-log-v1\n"


def parse_drv_name(name: str) -> str:
    """``name`` if it is the basename of a ``.drv`` store path.

    Raises:
        BadRequestError: not ``<32 nix32>-<name>.drv`` with a valid name.
    """
    try:
        path = StorePath.parse_basename(name)
    except StorePathError as exc:
        raise BadRequestError(f"bad derivation name {name[:100]!r}: {exc}") from exc
    if not path.name.endswith(".drv"):
        raise BadRequestError(f"bad derivation name {name[:100]!r}: does not end in .drv")
    return name


def log_record_key(drv: str) -> str:
    """The record key of the log of ``drv`` (32 nix32 characters, never a store hash by design:
    the first 160 bits of SHA-256 over a log-only prefix and the name)."""
    return nix32.encode(hashlib.sha256(b"nixshard build log\0" + drv.encode()).digest())[:32]


def log_metadata(drv: str) -> bytes:
    """The record metadata of the log of ``drv``."""
    return LOG_MAGIC + drv.encode()


async def store_log(net: NetworkClient, publisher: Publisher, drv: str, path: Path) -> int:
    """Store the log text in file ``path`` as the log of ``drv``; returns its size in bytes.

    Raises:
        StorageNetworkError: a node refused a shard or the record.
    """
    manifest, stats = await store_payload(net, publisher, file_pieces(path))
    await publish_record(net, publisher, log_record_key(drv), log_metadata(drv), manifest,
                         touched_at=stats.touched_at)
    return manifest.size

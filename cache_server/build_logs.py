"""Build logs through the gateway: ``nix store copy-log --to http://...`` and ``nix log``.

Nix (``src/libstore/binary-cache-store.cc``, ``addBuildLog`` / ``getBuildLog``)
keeps the log of ``/nix/store/<drv>`` at ``log/<drv basename>``, uncompressed
text.  The gateway checks the name (:func:`parse_drv_name`) and stores the
log as a payload of its own under a signed record
(:mod:`nix_records.build_logs` defines its key and metadata), so every
gateway on the network serves it.
"""

from __future__ import annotations

from pathlib import Path

from nix_formats.errors import StorePathError
from nix_formats.store_path import StorePath
from nix_records import RecordContent, log_metadata, log_record_key, store_then_publish
from storage_network import NetworkClient, Publisher

from .errors import BadRequestError
from .staging import file_pieces


def parse_drv_name(name: str) -> str:
    """``name`` if it is the basename of a ``.drv`` store path.

    Raises:
        BadRequestError: not ``<32 nix32>-<name>.drv`` with a valid name
            (Nix ``src/libstore/path.cc``).
    """
    try:
        path = StorePath.parse_basename(name)
    except StorePathError as exc:
        raise BadRequestError(f"bad derivation name {name[:100]!r}: {exc}") from exc
    if not path.name.endswith(".drv"):
        raise BadRequestError(f"bad derivation name {name[:100]!r}: does not end in .drv")
    return name


async def store_log(net: NetworkClient, publisher: Publisher, drv: str, path: Path) -> int:
    """Store the log text in file ``path`` as the log of ``drv``; returns its size in bytes.

    Raises:
        StorageNetworkError: a node refused a shard or the record.
    """
    record = RecordContent(log_record_key(drv), log_metadata(drv))
    payload, _ = await store_then_publish(net, publisher, file_pieces(path), lambda _: record)
    return payload.manifest.size

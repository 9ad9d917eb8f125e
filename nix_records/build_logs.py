"""Build-log records: the key and metadata of the record holding a derivation's build log.

Nix (``src/libstore/binary-cache-store.cc``, ``addBuildLog`` /
``getBuildLog``) keeps the log of ``/nix/store/<drv>`` at ``log/<drv
basename>``, uncompressed text.  In the network the log is a payload of
its own (chunks and shards, like a NAR) under a signed record whose key is
derived from the ``.drv`` basename (:func:`log_record_key`) and whose
metadata is :data:`LOG_MAGIC` followed by that basename
(:func:`log_metadata`); a reader checks both before serving the log, and a
narinfo lookup that meets such a record treats the path as absent
(:func:`is_build_log`).
"""

from __future__ import annotations

from .narinfo_record import derived_record_key

__all__ = ["LOG_MAGIC", "is_build_log", "log_metadata", "log_record_key"]

#: The first bytes of a build-log record's metadata (a narinfo never starts so).
LOG_MAGIC = b"nixshard-build-log-v1\n"


def log_record_key(drv: str) -> str:
    """The record key of the build log of ``drv``.

    Args:
        drv: a ``.drv`` store-path basename ``<32 nix32>-<name>.drv``
            (validated by the caller).

    Returns:
        32 nix32 characters: the first 160 bits of SHA-256 over a log-only
        prefix and the name, so never the hash part of a store path by design.
    """
    return derived_record_key(b"nixshard build log", drv)


def log_metadata(drv: str) -> bytes:
    """The record metadata of the build log of ``drv``: :data:`LOG_MAGIC` + the basename (UTF-8)."""
    return LOG_MAGIC + drv.encode()


def is_build_log(metadata: bytes) -> bool:
    """True when record ``metadata`` is a build log's rather than a narinfo."""
    return metadata.startswith(LOG_MAGIC)

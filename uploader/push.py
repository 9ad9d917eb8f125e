"""Push store paths into the shard network.

Per store path, references first: skip it if the network already holds a
record for it; else stream its NAR (:func:`nix_formats.nar.dump_path`)
through :func:`storage_network.publish.store_payload`, check the NarHash
against the Nix database, write the narinfo (``Compression: zstd``, a
``Sig:`` by the Nix signing key) and publish the signed record last.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from nix_formats.hash import format_sha256_nix32
from nix_formats.keys import SecretKey, sign_narinfo
from nix_formats.nar import dump_path
from nix_formats.narinfo import NarInfo
from nix_formats.store_path import StorePath
from storage_network.auth import Publisher
from storage_network.errors import NotFoundError, StorageNetworkError
from storage_network.network_client import NetworkClient
from storage_network.publish import PublishStats, publish_record, store_payload
from storage_network.record_lookup import fetch_record

from .closure import PathInfo
from .errors import PushError
from .narstream import HashingStream


@dataclass
class PushSummary:
    """What a push did: paths pushed/skipped, byte figures (bytes), wall time (seconds)."""

    pushed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    stats: PublishStats = field(default_factory=PublishStats)
    record_bytes: int = 0
    seconds: float = 0.0


def nar_url(store_path: StorePath, nar_hash: bytes) -> str:
    """The narinfo ``URL:`` of a pushed NAR: ``nar/<store hash>-<nix32 NarHash>.nar.zst``."""
    return f"nar/{store_path.hash_part}-{format_sha256_nix32(nar_hash)[7:]}.nar.zst"


def make_narinfo(info: PathInfo, nar_hash: bytes, nar_size: int, file_size: int,
                 key: SecretKey) -> NarInfo:
    """The signed narinfo of a pushed path (format: Nix src/libstore/nar-info.cc)."""
    narinfo = NarInfo(
        store_path=info.store_path,
        url=nar_url(info.store_path, nar_hash),
        compression="zstd",
        file_hash=None,
        file_size=file_size,
        nar_hash=format_sha256_nix32(nar_hash),
        nar_size=nar_size,
        references=[StorePath.parse(r).basename for r in info.references],
        deriver=StorePath.parse(info.deriver).basename if info.deriver else None,
        sigs=[],
        ca=info.ca,
    )
    sign_narinfo(narinfo, key)
    return narinfo


async def push_path(net: NetworkClient, info: PathInfo, nix_key: SecretKey,
                    publisher: Publisher, summary: PushSummary) -> bool:
    """Push one store path unless the network holds it; True if pushed.

    Raises:
        PushError: the NAR does not match the Nix database, or the network
            refused a shard or the record (the message says which).
    """
    key = info.store_path.hash_part
    try:
        await fetch_record(net, key)
        summary.skipped.append(info.store_path.path)
        return False
    except NotFoundError:
        pass
    except StorageNetworkError as exc:
        raise PushError(f"{info.store_path.path}: cannot tell whether it is stored: {exc}") from exc
    nar = HashingStream(dump_path(info.source))
    try:
        manifest, stats = await store_payload(net, publisher, nar)
    except StorageNetworkError as exc:
        raise PushError(f"{info.store_path.path}: {exc}") from exc
    if info.nar_hash is not None and (nar.sha256 != info.nar_hash or nar.size != info.nar_size):
        raise PushError(
            f"{info.store_path.path}: NAR read from disk ({format_sha256_nix32(nar.sha256)}, "
            f"{nar.size} bytes) differs from the Nix database "
            f"({format_sha256_nix32(info.nar_hash)}, {info.nar_size} bytes): "
            "the store path was modified; run `nix store verify`")
    narinfo = make_narinfo(info, nar.sha256, nar.size, manifest.stored_size, nix_key)
    try:
        summary.record_bytes += await publish_record(
            net, publisher, key, narinfo.render().encode(), manifest,
            touched_at=stats.touched_at)
    except StorageNetworkError as exc:
        raise PushError(f"{info.store_path.path}: record not stored: {exc}") from exc
    summary.stats.add(stats)
    summary.pushed.append(info.store_path.path)
    return True


async def push_closure(net: NetworkClient, infos: Sequence[PathInfo], nix_key: SecretKey,
                       publisher: Publisher) -> PushSummary:
    """Push ``infos`` in the given order (references first); see :func:`push_path`."""
    summary = PushSummary()
    start = time.monotonic()
    for info in infos:
        await push_path(net, info, nix_key, publisher, summary)
    summary.seconds = time.monotonic() - start
    return summary


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``1.5 KB``, ``12.3 MB``, ``2.0 GB`` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def format_summary(summary: PushSummary, k: int, m: int) -> str:
    """The one-screen summary printed at the end of ``nixshard push``."""
    s = summary.stats
    rate = s.payload_bytes / summary.seconds if summary.seconds > 0 else 0.0
    lines = [
        f"paths pushed:      {len(summary.pushed)}",
        f"paths skipped:     {len(summary.skipped)} (already in the network)",
        f"NAR bytes pushed:  {format_bytes(s.payload_bytes)} in {s.chunks} chunks",
        f"stored on nodes:   {format_bytes(s.stored_bytes)} of new shards ({k}-of-{k + m}),"
        f" {format_bytes(summary.record_bytes)} of records",
        f"saved by dedup:    {format_bytes(s.reused_bytes)} of shards already held"
        f" ({s.chunks_reused} chunks)",
        f"time:              {summary.seconds:.2f} s ({format_bytes(rate)}/s)",
    ]
    return "\n".join(lines)

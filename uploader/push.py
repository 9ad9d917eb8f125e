"""Push store paths into the shard network.

Per store path: skip it if the network already holds a record for it (unless
the push renews its lease, :mod:`uploader.lease`); else
stream its NAR (:func:`nix_formats.nar.dump_path`) into the network
(:func:`nix_records.publishing.store`), check the NarHash against the Nix
database, make the narinfo (:func:`nix_records.narinfo_record.new_narinfo`,
a ``Sig:`` by the Nix signing key) and publish the signed record last
(:func:`nix_records.publishing.publish`).

:func:`push_closure` pushes up to ``jobs`` paths at once.  Payloads (shards)
go in parallel; a record, the commit point, is written only once the
records of all the path's references within the push are written (or were
already there), so a reader never sees a narinfo whose references are
missing.  When a path fails, the paths that depend on it (directly or not)
are not committed; independent paths still are.  A node's quota refusal
(:class:`~storage_network.errors.QuotaExceededError`) fails its path and stops
the push: paths not started yet are not pushed (:attr:`PushSummary.quota`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from nix_formats.errors import NixFormatError
from nix_formats.hash import format_sha256_nix32
from nix_formats.keys import SecretKey, sign_narinfo
from nix_formats.nar import dump_path
from nix_records import (
    RecordContent,
    StoredPayload,
    narinfo_record,
    new_narinfo,
    publish,
    record_key,
    store,
)
from storage_network import (
    NetworkClient,
    NotFoundError,
    Publisher,
    PublishStats,
    StorageNetworkError,
    fetch_record,
)
from storage_network.errors import QuotaExceededError

from .closure import PathInfo, topological_order
from .errors import PushError, PushFailedError, PushQuotaError
from .lease import renews
from .narstream import HashingStream

DEFAULT_JOBS = 4

ProgressCallback = Callable[[int], None]
"""Called on the event loop's thread with a number of NAR bytes just read (or skipped)."""

DoneCallback = Callable[[PathInfo, bool], None]
"""Called once a path is in the network: True when this push wrote its record,
False when the record was already there."""


@dataclass
class PushSummary:
    """What a push did: paths pushed/skipped, byte figures (bytes), wall time (seconds).

    ``pushed`` lists paths in the order their records were written;
    ``failed`` maps each path that was not pushed to the reason; ``quota`` is
    the node's quota refusal that stopped the push (None: not stopped).
    """

    pushed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    stats: PublishStats = field(default_factory=PublishStats)
    record_bytes: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)
    quota: str | None = None


@dataclass(frozen=True)
class _Stored:
    """A path whose shards are all stored and whose record is not written yet."""

    record: RecordContent
    payload: StoredPayload


def _reporting(pieces: Iterable[bytes], loop: asyncio.AbstractEventLoop,
               report: ProgressCallback) -> Iterator[bytes]:
    """``pieces`` unchanged; ``report(len(piece))`` runs on ``loop`` for each (thread-safe)."""
    for piece in pieces:
        loop.call_soon_threadsafe(report, len(piece))
        yield piece


async def _store(net: NetworkClient, info: PathInfo, nix_key: SecretKey, publisher: Publisher,
                 report: ProgressCallback | None = None,
                 expires: int | None = None) -> _Stored | None:
    """Store the shards of ``info``'s NAR; None when the network holds its record already
    and a record ending at ``expires`` (None: never) would not renew its lease.

    Raises:
        PushQuotaError: a node refused a shard: the publisher is over its quota.
        PushError: unreadable tree, NAR differs from the Nix database, a node
            refused a shard, or the record lookup could not tell.
    """
    path = info.store_path.path
    try:
        held = await fetch_record(net, record_key(info.store_path.hash_part))
        if not renews(held, expires):
            return None
    except NotFoundError:
        pass
    except StorageNetworkError as exc:
        raise PushError(f"{path}: cannot tell whether it is stored: {exc}") from exc
    nar = HashingStream(dump_path(info.source))
    pieces: Iterable[bytes] = nar
    if report is not None:
        pieces = _reporting(nar, asyncio.get_running_loop(), report)
    try:
        payload = await store(net, publisher, pieces)
    except QuotaExceededError as exc:
        raise PushQuotaError(f"{path}: not pushed: {exc}", str(exc)) from exc
    except StorageNetworkError as exc:
        raise PushError(f"{path}: {exc}") from exc
    except (OSError, NixFormatError) as exc:
        raise PushError(f"{path}: cannot read {info.source}: {exc}") from exc
    if info.nar_hash is not None and (nar.sha256 != info.nar_hash or nar.size != info.nar_size):
        raise PushError(
            f"{path}: NAR read from disk ({format_sha256_nix32(nar.sha256)}, "
            f"{nar.size} bytes) differs from the Nix database "
            f"({format_sha256_nix32(info.nar_hash)}, {info.nar_size} bytes): "
            "the store path was modified; run `nix store verify`")
    try:
        narinfo = new_narinfo(info.store_path, nar.sha256, nar.size, payload.manifest,
                              references=info.references, deriver=info.deriver, ca=info.ca)
        sign_narinfo(narinfo, nix_key)
        record = narinfo_record(narinfo)
    except NixFormatError as exc:
        raise PushError(f"{path}: {exc}") from exc
    return _Stored(record, payload)


async def _commit(net: NetworkClient, info: PathInfo, stored: _Stored, publisher: Publisher,
                  summary: PushSummary, expires: int | None = None) -> None:
    """Write the record of a stored path (the commit point), its lease ending at
    ``expires`` (None: never), and count it in ``summary``.

    Raises:
        PushQuotaError: a node refused the record: the publisher is over its quota.
        PushError: the record was not stored on every replica node.
    """
    try:
        summary.record_bytes += await publish(net, publisher, stored.record, stored.payload,
                                              expires)
    except QuotaExceededError as exc:
        raise PushQuotaError(f"{info.store_path.path}: record not stored: {exc}",
                             str(exc)) from exc
    except StorageNetworkError as exc:
        raise PushError(f"{info.store_path.path}: record not stored: {exc}") from exc
    summary.stats.add(stored.payload.stats)
    summary.pushed.append(info.store_path.path)


async def push_path(net: NetworkClient, info: PathInfo, nix_key: SecretKey,
                    publisher: Publisher, summary: PushSummary,
                    expires: int | None = None) -> bool:
    """Push one store path unless the network holds it (and ``expires``, the end of
    the lease its record gets, None: never, renews nothing); True if pushed.

    Its references are not checked: :func:`push_closure` orders the records.

    Raises:
        PushError: the tree cannot be read, the NAR does not match the Nix
            database, or the network refused a shard or the record (the
            message starts with the store path and says which).
    """
    stored = await _store(net, info, nix_key, publisher, expires=expires)
    if stored is None:
        summary.skipped.append(info.store_path.path)
        return False
    await _commit(net, info, stored, publisher, summary, expires)
    return True


async def push_closure(net: NetworkClient, infos: Sequence[PathInfo], nix_key: SecretKey,
                       publisher: Publisher, *, jobs: int = DEFAULT_JOBS,
                       progress: ProgressCallback | None = None,
                       on_done: DoneCallback | None = None,
                       expires: int | None = None) -> PushSummary:
    """Push ``infos``, up to ``jobs`` paths at once, each record after its references' records.

    References outside ``infos`` are taken to be in the network already.
    Shards of a path are stored as soon as a job is free (in dependency
    order of start); its record waits until the records of its references
    in ``infos`` are written or found present.  A path that fails (see
    :func:`push_path`) is not committed, nor is any path that depends on it;
    every other path is.

    Args:
        jobs: store paths worked on at once (>= 1).
        progress: called with NAR byte counts as NARs are read; skipped and
            failed paths count their whole ``nar_size``, so the counts add
            up to the sum of the known ``nar_size`` values.
        on_done: called for each path that is in the network afterwards.
        expires: unix seconds the lease of every record written ends at (None:
            they never expire); a path held with an earlier end is pushed again
            (:func:`uploader.lease.renews`).

    Returns:
        The summary (``pushed`` in record order).

    Raises:
        ValueError: ``jobs`` < 1.
        NixQueryError: the references of ``infos`` form a cycle.
        PushFailedError: some paths were not pushed (``failures`` names each
            with its reason; ``summary`` holds what was pushed, and
            ``summary.quota`` the quota refusal that stopped the push, if one did).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    order = topological_order(infos)
    summary = PushSummary()
    start = time.monotonic()
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(jobs)
    in_network: dict[str, asyncio.Future[bool]] = {
        info.store_path.path: loop.create_future() for info in order}

    def failed_reference(refs: list[str]) -> str | None:
        return next((r for r in refs if in_network[r].done() and not in_network[r].result()),
                    None)

    def stopped() -> str | None:
        return None if summary.quota is None else "the push stopped"

    async def push_one(info: PathInfo) -> None:
        path = info.store_path.path
        refs = [r for r in info.references if r != path and r in in_network]
        read = 0

        def report(count: int) -> None:
            nonlocal read
            read += count
            if progress is not None:
                progress(count)

        stored: _Stored | None = None
        done = False
        try:
            blocker = failed_reference(refs) or stopped()
            if blocker is None:
                async with slots:
                    blocker = failed_reference(refs) or stopped()
                    if blocker is None:
                        stored = await _store(net, info, nix_key, publisher,
                                              report if progress is not None else None,
                                              expires)
                        done = stored is None
            if stored is not None:
                for ref in refs:
                    if not await in_network[ref]:
                        blocker = ref
                        break
                if blocker is None:
                    await _commit(net, info, stored, publisher, summary, expires)
                    done = True
            elif done:
                summary.skipped.append(path)
            if blocker is not None and blocker == stopped():
                summary.failed[path] = f"not pushed: {blocker} ({summary.quota})"
            elif blocker is not None:
                summary.failed[path] = f"not committed: its reference {blocker} was not pushed"
        except PushQuotaError as exc:
            summary.failed[path] = str(exc).removeprefix(f"{path}: ")
            summary.quota = summary.quota or exc.quota
        except PushError as exc:
            summary.failed[path] = str(exc).removeprefix(f"{path}: ")
        finally:
            if not in_network[path].done():
                in_network[path].set_result(done)
            if progress is not None and info.nar_size is not None and read < info.nar_size:
                progress(info.nar_size - read)
        if done and on_done is not None:
            on_done(info, stored is not None)

    tasks = [asyncio.create_task(push_one(info)) for info in order]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    summary.seconds = time.monotonic() - start
    if summary.failed:
        raise PushFailedError(summary.failed, summary)
    return summary


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``1.5 KB``, ``12.3 MB``, ``2.0 GB`` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def format_summary(summary: PushSummary, k: int, m: int) -> str:
    """The one-screen summary printed at the end of ``nixshard push``: paths, bytes,
    time; when nodes were missing, the degraded chunk count ("N chunks degraded:
    run nixshard repair") and each node passed over with why."""
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
    if summary.failed:
        lines.insert(2, f"paths failed:      {len(summary.failed)} (not committed)")
    if s.degraded_chunks:
        lines.append(f"degraded:          {s.degraded_chunks} chunks degraded: run nixshard "
                     f"repair (stored with fewer than {k + m} shards, at least {k + 1})")
    for node_id, why in sorted(s.passed_over.items()):
        lines.append(f"passed over:       {node_id}: {why[:300]}")
    return "\n".join(lines)

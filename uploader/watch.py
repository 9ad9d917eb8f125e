"""``nixshard push --watch-store``: push new store paths as they appear.

Every ``interval`` seconds the store directory is listed with
:func:`os.scandir`.  Polling, not inotify: it needs no extra dependency or
kernel feature, works on any file system (overlays and network mounts in
CI containers included), and a listing of a store of 100 000 entries costs
milliseconds, against builds that take seconds.

The first listing is the baseline: paths already there are not pushed
(start the watcher before the build), unless ``push_existing`` is set: then
the baseline is empty and the first round, at once, pushes every valid path
already in the store.  Each round, in batches of :data:`VALIDITY_BATCH`:

1. :func:`new_store_paths` (pure) picks the entries not yet handled that
   can be store paths to push: a store-path basename, not a ``.lock`` file,
   not a build's ``.chroot``/``.check`` directory, not a temporary name, and
   not a ``.drv`` file (derivations are skipped by default; build results
   are what a cache is for).
2. ``nix path-info`` tells which of them are valid: a path being built, or
   being copied in, is not valid yet and waits for a later round.
3. The closure of the valid ones is pushed
   (:func:`uploader.push.push_closure`): references the watcher pushed or
   found in the network before are left out, the others are looked up, so
   paths already in the network cost one record lookup.  One log line per
   pushed path.
4. A path whose push failed (its own error or a reference's), or whose
   batch could not be asked about, is logged and waits before its next try:
   capped exponential backoff with jitter (:class:`uploader.backoff.Backoff`,
   ``retry_delay`` doubling up to ``retry_max_delay`` seconds), so a path
   that keeps failing costs a log line every few minutes, not every round.
   The watcher keeps running.

SIGINT or SIGTERM stops it: the round in progress finishes, one last round
picks up paths that became valid meanwhile, and it returns.  A second
signal abandons the push in progress (records already written are
consistent: each one was written after its references').
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Set
from dataclasses import dataclass, field

from nix_formats.errors import StorePathError
from nix_formats.keys import SecretKey
from nix_formats.store_path import StorePath
from storage_network import Keyring, Network, NetworkClient, Publisher

from .backoff import DEFAULT_RETRY_DELAY, DEFAULT_RETRY_MAX_DELAY, Backoff
from .closure import PathInfo, query_closure, valid_paths
from .errors import PushFailedError, StoreWatchError, UploaderError
from .push import DEFAULT_JOBS, format_bytes, push_closure
from .stop_signals import StopOnSignal

log = logging.getLogger("nixshard.push")

DEFAULT_STORE_DIR = "/nix/store"
DEFAULT_INTERVAL = 2.0
# Names Nix gives to things in the store directory that are not store paths
# (yet): lock files, a sandboxed build's chroot, `--check` build outputs.
SKIPPED_SUFFIXES = (".lock", ".chroot", ".check")
# Paths asked about in one `nix path-info` call, and pushed in one closure push
# (keeps argv short and a round of --push-existing on a big store in bounds).
VALIDITY_BATCH = 500


def is_candidate(name: str, include_drv: bool = False) -> bool:
    """Whether the store-directory entry ``name`` could be a store path to push.

    False for names that are not ``<32 nix32 chars>-<name>`` (temporary
    names, ``.links``), for :data:`SKIPPED_SUFFIXES` and, unless
    ``include_drv``, for ``.drv`` files.
    """
    if name.endswith(SKIPPED_SUFFIXES) or (not include_drv and name.endswith(".drv")):
        return False
    try:
        StorePath.parse_basename(name)
    except StorePathError:
        return False
    return True


def new_store_paths(known: Set[str], names: Iterable[str],
                    include_drv: bool = False) -> list[str]:
    """The entries of a listing to look at this round, sorted.

    Args:
        known: basenames already handled (the baseline and pushed paths).
        names: the basenames listed in the store directory now.
        include_drv: also take ``.drv`` files.

    Returns:
        The members of ``names`` not in ``known`` for which
        :func:`is_candidate` holds.
    """
    return sorted(n for n in set(names) if n not in known and is_candidate(n, include_drv))


def scan_store(store_dir: str) -> set[str]:
    """The basenames in ``store_dir``.

    Raises:
        StoreWatchError: it cannot be listed (the message names it and why).
    """
    try:
        with os.scandir(store_dir) as entries:
            return {entry.name for entry in entries}
    except OSError as exc:
        raise StoreWatchError(f"cannot list the store directory {store_dir}: "
                              f"{exc.strerror or exc}") from exc


@dataclass
class WatchReport:
    """What a watch session did.

    Attributes:
        pushed: store paths whose records the watcher wrote, in order.
        rounds: listings compared (the baseline not counted).
        unpushed: path -> reason for paths that failed in the last round.
        error: why the last round (or a batch of it) failed as a whole (store
            not listable, ``nix`` failed), or None.
        interrupted: a second signal abandoned a push in progress.
    """

    pushed: list[str] = field(default_factory=list)
    rounds: int = 0
    unpushed: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        """True when the last round pushed everything it found and was not interrupted."""
        return not (self.unpushed or self.error or self.interrupted)


class StoreWatcher:
    """The state of a watch session on one store directory (see the module docstring).

    Args:
        net: an open network client.
        nix_key, publisher: the signing key as Nix key and network publisher.
        store_dir: the Nix store directory (absolute).
        jobs: store paths pushed at once (>= 1).
        include_drv: push ``.drv`` files too.
        push_existing: the baseline is empty: what is in the store at start
            is pushed too (see :meth:`baseline`).
        retry: when a failing path may be tried again (default: a
            :class:`~uploader.backoff.Backoff` with the default delays).
    """

    def __init__(self, net: NetworkClient, nix_key: SecretKey, publisher: Publisher,
                 store_dir: str = DEFAULT_STORE_DIR, *, jobs: int = DEFAULT_JOBS,
                 include_drv: bool = False, push_existing: bool = False,
                 retry: Backoff | None = None) -> None:
        self.net = net
        self.nix_key = nix_key
        self.publisher = publisher
        self.store_dir = store_dir.rstrip("/") or "/"
        self.jobs = jobs
        self.include_drv = include_drv
        self.push_existing = push_existing
        self.retry = retry or Backoff()
        self.known: set[str] = set()
        self.in_network: set[str] = set()
        self.report = WatchReport()

    def baseline(self) -> int:
        """List the store once; what is there now is not pushed (unless ``push_existing``:
        then nothing is known yet).  Returns the entry count.

        Raises:
            StoreWatchError: the store directory cannot be listed.
        """
        names = scan_store(self.store_dir)
        self.known = set() if self.push_existing else names
        return len(names)

    def _full(self, name: str) -> str:
        return f"{self.store_dir}/{name}"

    def _done(self, info: PathInfo, pushed: bool) -> None:
        self.in_network.add(info.store_path.path)
        if pushed:
            self.report.pushed.append(info.store_path.path)
            size = format_bytes(info.nar_size) if info.nar_size is not None else "?"
            log.info("pushed %s (%s NAR)", info.store_path.path, size)

    async def _valid(self, names: list[str]) -> set[str]:
        valid: set[str] = set()
        for i in range(0, len(names), VALIDITY_BATCH):
            paths = [self._full(n) for n in names[i:i + VALIDITY_BATCH]]
            valid |= await asyncio.to_thread(valid_paths, paths)
        return {n for n in names if self._full(n) in valid}

    async def round(self) -> None:
        """List the store and push the closures of new valid paths that are due.

        Errors are logged, not raised, and noted in :attr:`report`
        (``unpushed``: path -> reason; ``error``: the round or a batch as a
        whole).  What was not pushed is tried again once its backoff
        (:attr:`retry`) allows; a path not valid yet is looked at every round.
        """
        self.report.rounds += 1
        self.report.unpushed, self.report.error = {}, None
        try:
            names = await asyncio.to_thread(scan_store, self.store_dir)
        except StoreWatchError as exc:
            log.warning("round %d failed, trying again next round: %s", self.report.rounds, exc)
            self.report.error = str(exc)
            return
        self.known &= names  # forget what was deleted; it is pushed again if it returns
        self.retry.keep_only(names)
        fresh = [n for n in new_store_paths(self.known, names, self.include_drv)
                 if self.retry.due(n)]
        for i in range(0, len(fresh), VALIDITY_BATCH):
            await self._push_batch(fresh[i:i + VALIDITY_BATCH])

    def _failed(self, name: str) -> str:
        """Note a failure of ``name``; returns when it is tried next, for the log."""
        delay = self.retry.failed(name)
        return f"failure {self.retry.failures(name)}, next try in {delay:.1f} s"

    async def _push_batch(self, names: list[str]) -> None:
        """Push the closures of the valid members of ``names`` (at most VALIDITY_BATCH)."""
        try:
            ready = await self._valid(names)
            if not ready:
                return
            try:
                infos = await asyncio.to_thread(query_closure,
                                                [self._full(n) for n in sorted(ready)])
            except UploaderError:
                # a path deleted (garbage-collected) since it was found valid spoils the
                # query of the whole batch: ask once more about those still valid
                ready = await self._valid(sorted(ready))
                infos = await asyncio.to_thread(query_closure,
                                                [self._full(n) for n in sorted(ready)])
        except UploaderError as exc:
            delay = max(self.retry.failed(n) for n in names)
            log.warning("round %d: cannot look at %d new store paths (next try in at most "
                        "%.1f s): %s", self.report.rounds, len(names), delay, exc)
            self.report.error = str(exc)
            return
        todo = [i for i in infos if i.store_path.path not in self.in_network]
        summary = None
        failures: dict[str, str] = {}
        try:
            summary = await push_closure(self.net, todo, self.nix_key, self.publisher,
                                         jobs=self.jobs, on_done=self._done)
        except PushFailedError as exc:
            summary = exc.summary
            failures = exc.failures
            self.report.unpushed.update(exc.failures)
        except UploaderError as exc:
            failures = {self._full(n): str(exc) for n in ready}
            self.report.error = str(exc)
        if summary is not None and summary.stats.degraded_chunks:
            log.warning("%d chunks degraded: run nixshard repair (nodes passed over: %s)",
                        summary.stats.degraded_chunks,
                        ", ".join(sorted(summary.stats.passed_over)) or "none")
        retries: dict[str, str] = {}
        for name in sorted(ready):
            if StorePath.parse_basename(name).path in self.in_network:
                self.known.add(name)
                self.retry.succeeded(name)
            else:
                retries[self._full(name)] = self._failed(name)
        for path, why in sorted(failures.items()):
            when = retries.get(path, "retried with the paths that need it")
            log.warning("not pushed (%s): %s: %s", when, path, why)

    async def run(self, stop: asyncio.Event, interval: float) -> WatchReport:
        """Rounds every ``interval`` seconds until ``stop`` is set, then one last round.

        With ``push_existing`` the first round runs at once.  Call
        :meth:`baseline` first.  Returns :attr:`report`.
        """
        if self.push_existing and not stop.is_set():
            await self.round()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            await self.round()
            if stop.is_set():
                return self.report


async def watch_store(network: Network, nix_key: SecretKey, publisher: Publisher, *,
                      store_dir: str = DEFAULT_STORE_DIR, interval: float = DEFAULT_INTERVAL,
                      jobs: int = DEFAULT_JOBS, include_drv: bool = False,
                      push_existing: bool = False,
                      retry_delay: float = DEFAULT_RETRY_DELAY,
                      retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY,
                      stop: asyncio.Event | None = None,
                      keyring: Keyring | None = None) -> WatchReport:
    """Watch ``store_dir`` and push new store paths until SIGINT/SIGTERM (or ``stop``).

    The first signal stops after the round in progress and one last round;
    a second abandons the push in progress (``interrupted`` in the report).

    Args:
        interval: seconds between two listings (> 0).
        jobs: store paths pushed at once (>= 1).
        push_existing: also push the valid paths in the store at start (the
            first round runs at once).
        retry_delay: seconds before the first retry of a failing path (> 0);
            it doubles with each failure in a row, with jitter.
        retry_max_delay: cap of that delay, seconds (>= ``retry_delay``).
        keyring: a private network's cache secrets (everything is sealed).

    Raises:
        ValueError: ``interval`` <= 0, ``jobs`` < 1, or bad retry delays.
        StoreWatchError: the store directory cannot be listed at the start.
    """
    if not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, not {interval}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    retry = Backoff(retry_delay, retry_max_delay)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    async with NetworkClient(network, keyring=keyring) as net:
        watcher = StoreWatcher(net, nix_key, publisher, store_dir, jobs=jobs,
                               include_drv=include_drv, push_existing=push_existing,
                               retry=retry)
        count = watcher.baseline()
        task = asyncio.create_task(watcher.run(stop, interval))
        with StopOnSignal(loop, stop, task, "stopping after one last round (send it again "
                                            "to abort)") as signals:
            now = "pushing the valid ones first" if push_existing else "not pushed"
            log.info("watching %s (%d entries now, %s) every %g s", watcher.store_dir,
                     count, now, interval)
            report = await signals.wait()
            if report is not None:
                return report
            watcher.report.interrupted = True
            return watcher.report

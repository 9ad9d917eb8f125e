"""``nixshard push --spool DIR``: push what the post-build hook queued, retrying until it is in.

``nix/post-build-hook.sh`` never touches the network: it writes the paths
Nix just built to a spool directory and returns in milliseconds.  This
service pushes them.  The spool layout, and the reading, listing and moving
of spool files, are in :mod:`uploader.spool_files`: every file seen in
``new/`` is complete.

Each round (:meth:`SpoolPusher.round`) takes the files of ``new/`` whose
retry time has come, oldest first (names sort by time), at most
:data:`FILES_PER_ROUND`:

1. each file is read (:func:`read_spool_file`); one that is not a list of
   store paths is moved to ``rejected/``; paths gone from the store
   (garbage-collected before they could be pushed: they never will be) are
   left out with a log line, and a file of only such paths is rejected;
2. the closures of their paths are asked of Nix (one ``nix path-info`` call,
   or one per file when that fails, to find the file at fault);
3. the union of the closures is pushed (:func:`uploader.push.push_closure`):
   each record after its references', paths found in the network before are
   left out;
4. a file is deleted as soon as every path it lists is in the network
   (one log line ``pushed``), never before;
5. a file not fully pushed stays, gets one log line ``not pushed`` with the
   reasons, and waits before its next try: capped exponential backoff with
   jitter (:class:`~uploader.backoff.Backoff`).

The first round runs at start (what was left in the spool goes first); then
the spool is listed every ``interval`` seconds, or sooner when a retry is due,
and at once while more files are due than one round takes.

SIGINT or SIGTERM: no new round starts, the push in progress finishes, and
the service returns.  A second signal abandons the push in progress
(records already written are consistent).  Files not pushed stay in the
spool for the next start either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field

from nix_formats.keys import SecretKey
from storage_network import Keyring, Network, NetworkClient, Publisher

from .backoff import DEFAULT_RETRY_DELAY, DEFAULT_RETRY_MAX_DELAY, Backoff
from .closure import PathInfo, query_closure
from .errors import PushFailedError, UploaderError
from .push import DEFAULT_JOBS, push_closure
from .spool_files import (
    DEFAULT_SPOOL_DIR,
    NEW_DIR,
    TMP_DIR,
    SpoolError,
    SpoolFileError,
    prepare_spool,
    reject_spool_file,
    remove_spool_file,
    stale_temp_files,
)

# SpoolFile, read_spool_file and spool_names live in uploader.spool_files; re-exported
# here for tests/test_post_build_hook.py, which imports them from this module.
from .spool_files import SpoolFile as SpoolFile
from .spool_files import read_spool_file as read_spool_file
from .spool_files import spool_names as spool_names
from .stop_signals import StopOnSignal

log = logging.getLogger("nixshard.push")

FILES_PER_ROUND = 64
"""Spool files pushed together in one round (their closures are pushed as one)."""
DEFAULT_INTERVAL = 2.0
"""Seconds between two listings of the spool when nothing is due."""
MAX_IN_NETWORK_MEMO = 100_000
"""Store paths remembered as being in the network; the memo is cleared beyond that."""
IN_NETWORK_MEMO_SECONDS = 3600.0
"""The memo is also cleared this often (seconds): gc may drop a record meanwhile."""


@dataclass
class SpoolReport:
    """What a spool session did.

    Counts, not lists, where a long-running service would pile entries up.

    Attributes:
        files_pushed: spool files pushed and deleted.
        records_written: store paths whose records this session wrote.
        rejected: spool files moved to ``rejected/``.
        failures: spool file -> why its last try failed, for files still waiting.
        rounds: rounds that tried at least one file.
        interrupted: a second signal abandoned a push in progress.
        left: files in ``new/`` when the session ended.
    """

    files_pushed: int = 0
    records_written: int = 0
    rejected: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    rounds: int = 0
    interrupted: bool = False
    left: int = 0


def _read_present(spool_dir: str, name: str) -> tuple[SpoolFile, list[str]]:
    """Spool file ``name`` and those of its store paths gone from the store (one trip to
    a worker thread: neither the read nor the lookups block the event loop).

    Raises:
        FileNotFoundError, SpoolFileError, SpoolError: as :func:`read_spool_file`.
    """
    spool_file = read_spool_file(spool_dir, name)
    return spool_file, [p for p in spool_file.store_paths if not os.path.lexists(p)]


class SpoolPusher:
    """Pushes the files of one spool directory (see the module docstring).

    Args:
        net: an open network client.
        nix_key, publisher: the signing key as Nix key and network publisher.
        spool_dir: the spool directory (with ``new/`` and ``tmp/``: :func:`prepare_spool`).
        jobs: store paths pushed at once (>= 1).
        retry: the retry schedule of failing files (default: a :class:`Backoff`
            with the default delays).
    """

    def __init__(self, net: NetworkClient, nix_key: SecretKey, publisher: Publisher,
                 spool_dir: str, *, jobs: int = DEFAULT_JOBS,
                 retry: Backoff | None = None) -> None:
        self.net = net
        self.nix_key = nix_key
        self.publisher = publisher
        self.spool_dir = spool_dir
        self.jobs = jobs
        self.retry = retry or Backoff()
        self.in_network: set[str] = set()
        self.report = SpoolReport()
        self._pending: dict[str, SpoolFile] = {}
        self._finishing: set[asyncio.Task[None]] = set()
        self._memo_since = time.monotonic()

    async def _finish(self, spool_file: SpoolFile) -> None:
        """``spool_file``'s paths are all in the network: delete it (in a worker thread)
        and say so."""
        self._pending.pop(spool_file.name, None)
        try:
            await asyncio.to_thread(remove_spool_file, self.spool_dir, spool_file.name)
        except SpoolError as exc:
            # pushed, but still in the spool: the next try finds it all in the network
            self._fail(spool_file, str(exc))
            return
        self.retry.succeeded(spool_file.name)
        self.report.failures.pop(spool_file.name, None)
        self.report.files_pushed += 1
        built = f" (built from {spool_file.drv_path})" if spool_file.drv_path else ""
        log.info("pushed spool file %s: %s%s", spool_file.name,
                 " ".join(spool_file.store_paths), built)

    def _fail(self, spool_file: SpoolFile, why: str) -> None:
        """``spool_file`` was not pushed: it stays, and waits before its next try."""
        self._pending.pop(spool_file.name, None)
        delay = self.retry.failed(spool_file.name)
        self.report.failures[spool_file.name] = why
        log.warning("not pushed spool file %s (failure %d, next try in %.1f s): %s",
                    spool_file.name, self.retry.failures(spool_file.name), delay, why)

    def _complete(self, spool_file: SpoolFile) -> bool:
        return all(p in self.in_network for p in spool_file.store_paths)

    def _on_done(self, info: PathInfo, pushed: bool) -> None:
        path = info.store_path.path
        self.in_network.add(path)
        if pushed:
            self.report.records_written += 1
        for spool_file in [f for f in self._pending.values() if path in f.store_paths]:
            if self._complete(spool_file):
                # called by push_closure, not awaited: finished in a task the round awaits;
                # out of _pending now, so neither finished twice nor failed meanwhile
                self._pending.pop(spool_file.name, None)
                task = asyncio.create_task(self._finish(spool_file))
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)

    async def _finished(self) -> None:
        """Wait for the files :meth:`_on_done` is finishing."""
        while self._finishing:
            for result in await asyncio.gather(*self._finishing, return_exceptions=True):
                if isinstance(result, Exception):  # the file stays; the next round retries
                    log.warning("finishing a pushed spool file failed: %r", result)

    async def _reject(self, name: str, why: str) -> None:
        try:
            target = await asyncio.to_thread(reject_spool_file, self.spool_dir, name)
        except SpoolError as exc:
            self.retry.failed(name)
            log.warning("rejected spool file %s, and cannot move it: %s (%s)", name, exc, why)
            return
        self.report.rejected.append(name)
        log.warning("rejected spool file %s (moved to %s): %s", name, target, why)

    async def _read(self, names: list[str]) -> list[SpoolFile]:
        """The files ``names`` parsed, less the rejected ones and paths gone from the store."""
        files: list[SpoolFile] = []
        for name in names:
            try:
                spool_file, gone = await asyncio.to_thread(_read_present, self.spool_dir, name)
            except FileNotFoundError:
                continue
            except SpoolFileError as exc:
                await self._reject(name, str(exc))
                continue
            except SpoolError as exc:
                self._fail(SpoolFile(name, ()), str(exc))
                continue
            if len(gone) == len(spool_file.store_paths):
                await self._reject(name, f"its store paths are gone from the store "
                                   f"(garbage-collected?): {' '.join(gone)}")
                continue
            if gone:
                log.warning("spool file %s: left out %d store paths gone from the store "
                            "(garbage-collected?): %s", name, len(gone), " ".join(gone))
                spool_file = SpoolFile(name, tuple(p for p in spool_file.store_paths
                                                   if p not in gone), spool_file.drv_path)
            files.append(spool_file)
        return files

    async def _closures(self, files: list[SpoolFile]) -> list[PathInfo]:
        """The closure of every file's paths; files whose paths Nix refuses are failed."""
        paths = list(dict.fromkeys(p for f in files for p in f.store_paths))
        try:
            return await asyncio.to_thread(query_closure, paths)
        except UploaderError:
            if len(files) == 1:
                raise
        infos: dict[str, PathInfo] = {}
        for spool_file in files:  # one query per file, to fail only the files at fault
            try:
                found = await asyncio.to_thread(query_closure, list(spool_file.store_paths))
            except UploaderError as exc:
                self._fail(spool_file, str(exc))
                continue
            infos.update((i.store_path.path, i) for i in found)
        return list(infos.values())

    async def round(self) -> bool:
        """Try the due spool files once (at most :data:`FILES_PER_ROUND`).

        Errors are logged, not raised: a file not pushed stays in the spool
        and gets its next try time (:attr:`retry`); its reason is in
        ``report.failures``.

        Returns:
            True when more files are due than this round took.

        Raises:
            SpoolError: the spool directory cannot be listed.
        """
        names = await asyncio.to_thread(spool_names, self.spool_dir)
        self.retry.keep_only(names)
        for gone in set(self.report.failures) - set(names):
            del self.report.failures[gone]
        due = [n for n in names if self.retry.due(n)]
        if not due:
            return False
        self.report.rounds += 1
        if (len(self.in_network) > MAX_IN_NETWORK_MEMO
                or time.monotonic() - self._memo_since > IN_NETWORK_MEMO_SECONDS):
            self.in_network.clear()
            self._memo_since = time.monotonic()
        files = await self._read(due[:FILES_PER_ROUND])
        self._pending = {f.name: f for f in files}
        try:
            infos = await self._closures(files)
            for spool_file in [f for f in self._pending.values() if self._complete(f)]:
                await self._finish(spool_file)
            todo = [i for i in infos if i.store_path.path not in self.in_network]
            if self._pending and todo:
                await push_closure(self.net, todo, self.nix_key, self.publisher,
                                   jobs=self.jobs, on_done=self._on_done)
        except PushFailedError as exc:
            for spool_file in list(self._pending.values()):
                reasons = [f"{p}: {exc.failures[p]}" for p in spool_file.store_paths
                           if p in exc.failures]
                self._fail(spool_file, "; ".join(reasons) or "a reference was not pushed")
        except UploaderError as exc:
            for spool_file in list(self._pending.values()):
                self._fail(spool_file, str(exc))
        except Exception as exc:  # a service keeps going; the files wait for their retry
            for spool_file in list(self._pending.values()):
                self._fail(spool_file, f"unexpected error: {exc!r}")
        await self._finished()
        for spool_file in list(self._pending.values()):  # not done by any path: a bug
            self._fail(spool_file, "some of its paths were not pushed")
        return len(due) > FILES_PER_ROUND

    async def run(self, stop: asyncio.Event, interval: float) -> SpoolReport:
        """Rounds until ``stop`` is set: at once, then every ``interval`` seconds or when
        a retry is due.  Returns :attr:`report` (``left`` counted at the end).

        Raises:
            SpoolError: the spool directory cannot be listed.
        """
        while not stop.is_set():
            more = await self.round()
            if stop.is_set():
                break
            if more:
                continue
            wait = interval
            due_in = self.retry.next_due()
            if due_in is not None:
                wait = min(wait, due_in)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
        with contextlib.suppress(SpoolError):  # the report matters more than the count
            self.report.left = len(await asyncio.to_thread(spool_names, self.spool_dir))
        return self.report


async def push_spool(network: Network, nix_key: SecretKey, publisher: Publisher, *,
                     spool_dir: str = DEFAULT_SPOOL_DIR, interval: float = DEFAULT_INTERVAL,
                     jobs: int = DEFAULT_JOBS, retry_delay: float = DEFAULT_RETRY_DELAY,
                     retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY,
                     stop: asyncio.Event | None = None,
                     keyring: Keyring | None = None) -> SpoolReport:
    """Push the spool in ``spool_dir`` until SIGINT/SIGTERM (or ``stop``).

    The first signal lets the push in progress finish and returns; a second
    abandons it (``interrupted`` in the report).  Unpushed files stay.

    Args:
        interval: seconds between two listings of the spool (> 0).
        jobs: store paths pushed at once (>= 1).
        retry_delay: seconds before the first retry of a failing file (> 0).
        retry_max_delay: cap of the retry delay, seconds (>= ``retry_delay``).
        keyring: a private network's cache secrets (everything is sealed).

    Raises:
        ValueError: an argument out of range (the message says which).
        SpoolError: the spool directory cannot be created or listed.
    """
    if not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, not {interval}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    retry = Backoff(retry_delay, retry_max_delay)
    prepare_spool(spool_dir)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    async with NetworkClient(network, keyring=keyring) as net:
        pusher = SpoolPusher(net, nix_key, publisher, spool_dir, jobs=jobs, retry=retry)
        waiting = len(spool_names(spool_dir))
        stale = stale_temp_files(spool_dir)
        if stale:
            log.warning("%d files in %s were left by post-build hooks that did not finish "
                        "(not pushed; delete them when done): %s", len(stale),
                        os.path.join(spool_dir, TMP_DIR), " ".join(stale[:5]))
        task = asyncio.create_task(pusher.run(stop, interval))
        with StopOnSignal(loop, stop, task, "stopping once the push in progress is done "
                                            "(send it again to abort it)") as signals:
            log.info("pushing the spool %s (%d files waiting), listing it every %g s",
                     os.path.join(spool_dir, NEW_DIR), waiting, interval)
            report = await signals.wait()
            if report is not None:
                return report
            pusher.report.interrupted = True
            with contextlib.suppress(SpoolError):
                pusher.report.left = len(spool_names(spool_dir))
            return pusher.report

"""The maps a node keeps: every valid epoch it has seen, on disk, written atomically.

Layout: ``<data>/maps/epoch-<10-digit epoch>.json``, each a signed map file
exactly as :meth:`~storage_network.network_map.SignedMap.to_bytes` writes it
(a temporary file in the same directory, fsync'd, renamed into place, the
directory fsync'd).  The epochs held are always one run ``L..N`` with no gap.

What is taken (:meth:`MapStore.accept`):

- epoch N + 1 signed by ``threshold`` maintainers of epoch N (the newest held),
  or, while nothing is held, epoch 1 signed by the bootstrap's maintainers:
  the new newest;
- epoch L - 1 whose SHA-256 is epoch L's ``previous``: an older epoch filled in
  (a node serves old epochs too, so clients can walk the chain);
- a copy of an epoch already held: nothing to do.

Anything else is refused: an older epoch or a gap (:class:`~.errors.Conflict`,
409), another document for an epoch held (409), signatures that do not make it
valid (:class:`~.errors.Unprocessable`, 422), and any map when the node has
neither a map nor a bootstrap file to check it against
(:class:`~.errors.Forbidden`, 403).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from storage_network.capped_file import read_capped
from storage_network.errors import MapError
from storage_network.network_map import (
    MAX_MAP_BYTES,
    Bootstrap,
    SignedMap,
    TrustRoot,
    parse_signed_map,
    verify_chain,
    verify_next,
)

from .disk import fsync_dir
from .errors import ConfigError, Conflict, DataDirError, Forbidden, Unprocessable

log = logging.getLogger("nixshard.node")
_FILE_RE = re.compile(r"\Aepoch-(\d{10})\.json\Z")


class Outcome(Enum):
    """What :meth:`MapStore.accept` did with a map."""

    NEWER = "newer"
    """It is the new newest epoch."""
    FILLED = "filled"
    """An older epoch the node lacked, now kept."""
    HELD = "held"
    """The node holds this very document already."""


def _file_name(epoch: int) -> str:
    return f"epoch-{epoch:010d}.json"


class MapStore:
    """The node's maps (see the module docstring).  Open it with :meth:`open`.

    Attributes:
        directory: where the map files live.
        bootstrap: the bootstrap file the node was started with, or None.
        listeners: functions called with each new newest map (after it is on disk).
    """

    def __init__(self, directory: Path, maps: dict[int, SignedMap],
                 bootstrap: Bootstrap | None) -> None:
        self.directory = directory
        self.bootstrap = bootstrap
        self._maps = maps
        self._lock = asyncio.Lock()
        self.listeners: list[Callable[[SignedMap], None]] = []

    @classmethod
    def open(cls, directory: Path, given: SignedMap | None = None,
             bootstrap: Bootstrap | None = None) -> MapStore:
        """Load the maps under ``directory`` (created if missing), then take ``given``
        (the operator's ``--map``): trusted as it is when nothing is held, else it
        must be held already, older, or follow the newest held.

        Held maps are checked again, each against the one before (the oldest is
        trusted: the node checked it when it took it); files after the first that
        does not follow are ignored with a warning.

        Raises:
            ConfigError: ``given`` contradicts what is held (another document for a
                held epoch, or a newer epoch that does not follow), or the held epoch
                1 is not signed by the bootstrap's maintainers.
            DataDirError: the directory cannot be created, read or written.
        """
        try:
            directory.mkdir(parents=True, exist_ok=True)
            store = cls(directory, _load(directory), bootstrap)
            store._check(given)
        except OSError as exc:
            raise DataDirError(f"network maps in {directory}: {exc.strerror or exc}") from None
        return store

    def _check(self, given: SignedMap | None) -> None:
        """The checks of :meth:`open` after loading."""
        bootstrap, oldest = self.bootstrap, self.oldest
        if bootstrap is not None and oldest is not None and oldest.epoch == 1:
            try:
                verify_next(bootstrap.trust_root(), oldest)
            except MapError as exc:
                raise ConfigError(f"the held epoch 1 does not match {bootstrap.source}: "
                                  f"{exc}") from None
        if given is not None:
            self._take_given(given)

    def _take_given(self, given: SignedMap) -> None:
        held = self._maps.get(given.epoch)
        newest = self.newest
        if held is not None:
            if held.digest() != given.digest():
                raise ConfigError(f"--map holds another document for epoch {given.epoch} "
                                  f"than the one in {self.directory}")
            return
        if newest is None:
            self._write(given)
        elif given.epoch < newest.epoch:
            log.info("--map is epoch %d, older than the held epoch %d: the held maps are "
                     "kept", given.epoch, newest.epoch)
            return
        else:
            try:
                verify_next(newest.trust_root(), given)
            except MapError as exc:
                raise ConfigError(f"--map does not follow the held maps in "
                                  f"{self.directory}: {exc}") from None
            self._write(given)
        self._maps[given.epoch] = given

    @property
    def newest(self) -> SignedMap | None:
        """The newest map held, or None."""
        return self._maps[max(self._maps)] if self._maps else None

    @property
    def oldest(self) -> SignedMap | None:
        """The oldest map held, or None."""
        return self._maps[min(self._maps)] if self._maps else None

    def get(self, epoch: int) -> SignedMap | None:
        """The map of ``epoch`` if held."""
        return self._maps.get(epoch)

    def trust_root(self) -> TrustRoot | None:
        """Who signs the next epoch: the newest map's maintainers, else the bootstrap's;
        None when the node has neither."""
        newest = self.newest
        if newest is not None:
            return newest.trust_root()
        return None if self.bootstrap is None else self.bootstrap.trust_root()

    async def accept(self, signed: SignedMap) -> Outcome:
        """Take ``signed`` if it is valid and new to this node (module docstring).

        Raises:
            Forbidden: no map and no bootstrap to check it against.
            Conflict: an older epoch (not the one just before the oldest held), a gap
                after the newest, or another document for a held epoch.
            Unprocessable: its signatures do not make it valid.
            OSError: it could not be written (nothing changed then).
        """
        async with self._lock:
            outcome = self._decide(signed)
            if outcome is Outcome.HELD:
                return outcome
            await asyncio.to_thread(self._write, signed)
            self._maps[signed.epoch] = signed
        if outcome is Outcome.NEWER:
            log.info("network map: now at epoch %d (%s)", signed.epoch,
                     ", ".join(s.key_name for s in signed.signatures))
            for listener in list(self.listeners):
                listener(signed)
        else:
            log.info("network map: filled in the older epoch %d", signed.epoch)
        return outcome

    def _decide(self, signed: SignedMap) -> Outcome:
        epoch = signed.epoch
        held = self._maps.get(epoch)
        if held is not None:
            if held.digest() == signed.digest():
                return Outcome.HELD
            raise Conflict(f"epoch {epoch} is held with another document "
                           f"(sha256 {held.digest()[:16]}..., offered {signed.digest()[:16]}...)")
        newest, oldest = self.newest, self.oldest
        root = self.trust_root()
        if root is None:
            raise Forbidden("this node has no network map and no bootstrap file to check "
                            "a map against (start it with --map or --bootstrap)")
        if newest is not None and oldest is not None and epoch < newest.epoch:
            if epoch != oldest.epoch - 1:
                raise Conflict(f"epoch {epoch} is older than the newest held epoch "
                               f"{newest.epoch}; of older epochs only {oldest.epoch - 1} is "
                               "taken (the one before the oldest held)")
            if signed.digest() != oldest.document.previous:
                raise Unprocessable(f"epoch {epoch} is not the previous document of the held "
                                    f"epoch {oldest.epoch}")
            return Outcome.FILLED
        if epoch > root.epoch + 1:
            raise Conflict(f"this node holds epoch {root.epoch} and needs epoch "
                           f"{root.epoch + 1} before epoch {epoch}")
        try:
            verify_next(root, signed)
        except MapError as exc:
            raise Unprocessable(str(exc)) from None
        return Outcome.NEWER

    def read_file(self, epoch: int) -> bytes | None:
        """The stored bytes of ``epoch`` (blocking: call from a thread), None if not held."""
        if epoch not in self._maps:
            return None
        return (self.directory / _file_name(epoch)).read_bytes()

    def _write(self, signed: SignedMap) -> None:
        target = self.directory / _file_name(signed.epoch)
        fd, tmp = tempfile.mkstemp(prefix=".epoch-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(signed.to_bytes())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(self.directory)


def _load(directory: Path) -> dict[int, SignedMap]:
    """The held maps, checked each against the one before (see :meth:`MapStore.open`)."""
    found: dict[int, Path] = {}
    for path in directory.iterdir():
        match = _FILE_RE.fullmatch(path.name)
        if match is not None:
            found[int(match.group(1))] = path
    maps: list[SignedMap] = []
    for epoch in sorted(found):
        path = found[epoch]
        try:
            signed = parse_signed_map(read_capped(path, MAX_MAP_BYTES))
            if signed.epoch != epoch:
                raise MapError(f"holds epoch {signed.epoch}")
            if maps:
                verify_chain(maps[-1].trust_root(), [signed])
        except (MapError, OSError) as exc:
            log.warning("network map: %s and later epochs ignored: %s", path, exc)
            break
        maps.append(signed)
    return {m.epoch: m for m in maps}

"""Pins: named lists of store paths that garbage collection keeps, closures included.

A pin is a signed record like a store path's, read and written the same way
(docs/consistency.md: the newest version wins):

- its key is :func:`pin_record_key` of its name: 32 nix32 characters of
  SHA-256 over a pin-only prefix and the name, so never a store path's hash
  part by design (as :func:`nix_records.build_logs.log_record_key`); in a
  private cache it is keyed like every record key;
- its metadata is :data:`PIN_MAGIC` followed by UTF-8 JSON
  ``{"name": NAME, "paths": [full store paths, newest first], "keep": N or null}``
  (:meth:`Pin.metadata`; a narinfo never starts with the magic);
- its manifest has no chunks (a pin holds no payload), so every version of a
  pin has the same content and a newer one replaces the older on every node.

``keep`` is how many paths the pin holds at most: adding a path drops the
oldest beyond it.  A pin whose list is empty pins nothing (``nixshard pin
remove NAME`` writes one); garbage collection treats it as an ordinary record
that ages out.  ``nixshard gc`` keeps every path a pin names and everything
those paths reference (:mod:`nix_records.retention`).

Changing a pin reads its newest version, changes the list and writes a new
version: two changes of one pin at the same moment race, and the later
write wins (the other change is lost).  Give concurrent jobs their own pin
names.  A new version is signed at least one second after the version it
replaces (the signed ``created`` orders versions), so a change made in the
same second as the previous one waits for the next second.

In a private cache a pin's record carries its paths' keyed record keys and a
pin flag in the clear (:func:`storage_network.publish_record`), so
``nixshard gc`` keeps pinned closures without the cache secret.  After a key
rotation, a change also empties the pin's versions under the keyring's older
secrets (:func:`_retire_older_secrets`): without the secret nobody can tell
they are older versions of the same pin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nix_formats.errors import StorePathError
from nix_formats.store_path import StorePath
from storage_network import (
    Manifest,
    NetworkClient,
    NotFoundError,
    Publisher,
    Record,
    StorageNetworkError,
    fetch_record,
    publish_record,
)
from storage_network.read.record_lookup import fetch_stored_record
from storage_network.wire.sealed_metadata import MAX_LINKS, public_links

from .errors import NixRecordsError
from .narinfo_record import derived_record_key, record_key

__all__ = [
    "MAX_PIN_PATHS",
    "PIN_MAGIC",
    "Pin",
    "PinChange",
    "PinError",
    "check_pin_name",
    "is_pin",
    "pin_from_record",
    "pin_paths",
    "pin_record_key",
    "read_pin",
    "unpin",
]

#: The first bytes of a pin record's metadata (a narinfo never starts so).
PIN_MAGIC = b"nixshard-pin-v1\n"

#: The most paths one pin may hold (its metadata stays below ~1 MB); use ``keep``.
MAX_PIN_PATHS = 10_000

#: How far (seconds) the newest version of a pin may be signed ahead of this clock
#: before a change refuses instead of waiting for it.
MAX_CLOCK_AHEAD = 10.0

#: Record lookups :func:`pin_paths` runs at once to check that the paths are in the network.
CHECK_CONCURRENCY = 32

_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._+=@/-]{0,127}\Z")

log = logging.getLogger("nixshard.pins")


class PinError(NixRecordsError):
    """A pin name, path or change that is refused, or a pin record that does not parse;
    the message says which and why."""


def check_pin_name(name: str) -> str:
    """``name`` if it is a pin name: 1-128 of ``A-Z a-z 0-9 . _ + = @ / -``, starting
    with a letter or digit (``ci/main``, ``release-24.05``).

    Raises:
        PinError: anything else.
    """
    if not _NAME_RE.fullmatch(name):
        raise PinError(f"{name!r} is not a pin name: want 1-128 of A-Z a-z 0-9 . _ + = @ / -, "
                       "starting with a letter or digit")
    return name


def pin_record_key(name: str) -> str:
    """The record key of pin ``name`` (a valid name, :func:`check_pin_name`).

    Returns:
        32 nix32 characters: the first 160 bits of SHA-256 over a pin-only prefix
        and the name, so never the hash part of a store path (nor a build log's
        key) by design.
    """
    return derived_record_key(b"nixshard pin", name)


def is_pin(metadata: bytes) -> bool:
    """True when record ``metadata`` is a pin's (starts with :data:`PIN_MAGIC`)."""
    return metadata.startswith(PIN_MAGIC)


def _store_path(text: str) -> StorePath:
    try:
        return StorePath.parse(text)
    except StorePathError as exc:
        raise PinError(f"cannot pin {text!r}: {exc}") from exc


@dataclass(frozen=True)
class Pin:
    """One pin: its name, the store paths it holds (newest first) and its limit.

    Attributes:
        name: a pin name (:func:`check_pin_name`).
        paths: full store paths (``/nix/store/<hash>-<name>``), newest first, no
            path twice, at most :data:`MAX_PIN_PATHS` (and at most ``keep``).
        keep: the most paths the pin holds (at least 1), None for no limit.

    Raises:
        PinError: on construction, any of the above broken.
    """

    name: str
    paths: tuple[str, ...] = ()
    keep: int | None = None

    def __post_init__(self) -> None:
        check_pin_name(self.name)
        for path in self.paths:
            _store_path(path)
        if len(set(self.paths)) != len(self.paths):
            raise PinError(f"pin {self.name}: a path is listed twice")
        if self.keep is not None and (isinstance(self.keep, bool) or self.keep < 1):
            raise PinError(f"pin {self.name}: keep must be at least 1, not {self.keep}")
        if len(self.paths) > (self.keep or MAX_PIN_PATHS) or len(self.paths) > MAX_PIN_PATHS:
            raise PinError(f"pin {self.name}: {len(self.paths)} paths, more than "
                           f"{min(self.keep or MAX_PIN_PATHS, MAX_PIN_PATHS)} (give --keep N)")

    @property
    def key(self) -> str:
        """The pin's record key (:func:`pin_record_key`)."""
        return pin_record_key(self.name)

    @property
    def record_keys(self) -> list[str]:
        """The record keys of the pinned store paths, in the order of :attr:`paths`."""
        return [record_key(StorePath.parse(path).hash_part) for path in self.paths]

    def metadata(self) -> bytes:
        """The record metadata: :data:`PIN_MAGIC` + compact UTF-8 JSON (module docstring)."""
        body = {"name": self.name, "paths": list(self.paths), "keep": self.keep}
        return PIN_MAGIC + json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_metadata(cls, metadata: bytes) -> Pin:
        """Parse a pin record's metadata (:meth:`metadata`).

        Raises:
            PinError: no magic, not UTF-8 JSON of that shape, or a field that
                breaks the rules of the class.
        """
        if not is_pin(metadata):
            raise PinError("not a pin record (no pin magic)")
        try:
            body = json.loads(metadata[len(PIN_MAGIC):].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise PinError(f"pin record: not UTF-8 JSON: {exc}") from exc
        if not isinstance(body, dict) or set(body) != {"name", "paths", "keep"}:
            raise PinError("pin record: want a JSON object of name, paths and keep")
        name, paths, keep = body["name"], body["paths"], body["keep"]
        if not isinstance(name, str) or not isinstance(paths, list) \
                or not all(isinstance(p, str) for p in paths) \
                or not (keep is None or (isinstance(keep, int) and not isinstance(keep, bool))):
            raise PinError("pin record: name must be a string, paths a list of strings, "
                           "keep an integer or null")
        return cls(name, tuple(paths), keep)

    def with_added(self, store_paths: Sequence[str], keep: int | None = None
                   ) -> tuple[Pin, tuple[str, ...]]:
        """This pin with ``store_paths`` put first (in their order; a path already held
        moves to the front), then cut to ``keep`` paths.

        Args:
            keep: the new limit; None keeps the pin's own.

        Returns:
            The new pin and the paths it no longer holds (dropped beyond the limit).

        Raises:
            PinError: a bad path, no path, or more than :data:`MAX_PIN_PATHS`.
        """
        if not store_paths:
            raise PinError(f"pin {self.name}: no store path to add")
        new = list(dict.fromkeys(_store_path(p).path for p in store_paths))
        limit = self.keep if keep is None else keep
        merged = new + [p for p in self.paths if p not in new]
        dropped = [] if limit is None else merged[limit:]
        merged = merged if limit is None else merged[:limit]
        return Pin(self.name, tuple(merged), limit), tuple(dropped)

    def without(self, store_path: str | None) -> Pin:
        """This pin without ``store_path`` (None: without any path; the limit stays).

        Raises:
            PinError: the pin does not hold ``store_path``.
        """
        if store_path is None:
            return Pin(self.name, (), self.keep)
        path = _store_path(store_path).path
        if path not in self.paths:
            raise PinError(f"pin {self.name} does not hold {path}")
        return Pin(self.name, tuple(p for p in self.paths if p != path), self.keep)


@dataclass(frozen=True)
class PinChange:
    """What a pin change did.

    Attributes:
        before: the pin as it was (None: there was none, or it was deleted).
        after: the pin as written.
        dropped: paths it no longer holds (beyond ``keep``, or removed).
        record_bytes: size of the record written.
    """

    before: Pin | None
    after: Pin
    dropped: tuple[str, ...]
    record_bytes: int


def pin_from_record(record: Record, name: str | None = None) -> Pin:
    """The pin a record holds (its metadata opened, in a private cache).

    Args:
        name: when given, the pin must be this one.

    Raises:
        PinError: the record is not a pin, does not parse, or is another pin.
    """
    try:
        pin = Pin.from_metadata(record.metadata)
    except PinError as exc:
        raise PinError(f"record {record.key}: {exc}") from exc
    if name is not None and pin.name != name:
        raise PinError(f"record {record.key} holds pin {pin.name!r}, not {name!r}")
    return pin


async def _read(net: NetworkClient, name: str) -> tuple[Pin, int] | None:
    """The newest version of pin ``name`` and its signed ``created``; None if absent."""
    try:
        record = await fetch_record(net, pin_record_key(check_pin_name(name)))
    except NotFoundError:
        return None
    return pin_from_record(record, name), record.created


async def read_pin(net: NetworkClient, name: str) -> Pin | None:
    """The newest version of pin ``name`` (an emptied pin has no paths); None if absent.

    Raises:
        PinError: a bad name, or the record under its key is not that pin.
        StorageNetworkError: the record cannot be looked up
            (:func:`storage_network.fetch_record`: too few nodes answered, a
            private record that does not open).
    """
    found = await _read(net, name)
    return None if found is None else found[0]


async def _write(net: NetworkClient, publisher: Publisher, pin: Pin,
                 previous: int | None) -> int:
    """Publish ``pin``, signed after ``previous`` (the replaced version's ``created``)."""
    if previous is not None:
        wait = previous + 1 - time.time()
        if wait > MAX_CLOCK_AHEAD:
            raise PinError(f"pin {pin.name}: its newest version is signed {wait - 1:.0f} s "
                           "ahead of this clock; check the clocks of the hosts changing pins")
        if wait > 0:
            await asyncio.sleep(wait)
    if net.keyring is not None and len(pin.paths) * len(net.keyring) > MAX_LINKS:
        raise PinError(f"pin {pin.name}: {len(pin.paths)} paths under {len(net.keyring)} cache "
                       f"secrets are more than the {MAX_LINKS} links a private record carries; "
                       "give --keep N or drop retired secrets from the keyring")
    nw = net.network
    manifest = Manifest(nw.codec, nw.k, nw.m, (), sealed=net.keyring is not None)
    size = await publish_record(net, publisher, pin.key, pin.metadata(), manifest,
                                links=tuple(pin.record_keys), pin=bool(pin.paths))
    await _retire_older_secrets(net, publisher, pin, manifest)
    return size


async def _retire_older_secrets(net: NetworkClient, publisher: Publisher, pin: Pin,
                                manifest: Manifest) -> None:
    """In a private cache after a rotation: empty the versions of ``pin`` sealed under
    the keyring's older secrets that still say they are a pin.

    Each secret keys the pin's name to another record key, which nobody without
    the secret can tie to the current one; a collector without the secret
    (docs/gc.md) would keep such an older version as a pin, with its old paths,
    for ever.  An emptied version is an ordinary record that ages out.  A
    failure is logged, never raised: the pin itself is written.
    """
    if net.keyring is None:
        return
    for secret in list(net.keyring)[1:]:
        keyed = secret.record_key(pin.key)
        try:
            record = await fetch_stored_record(net, keyed)
            found = public_links(record.metadata)
            if found is not None and not found[1]:
                continue  # not a pin any more
            await publish_record(net, publisher, pin.key, Pin(pin.name, (), pin.keep).metadata(),
                                 manifest, secret=secret)
        except NotFoundError:
            continue
        except StorageNetworkError as exc:
            log.warning("pin %s: its version under the older cache secret %s (record %s) "
                        "could not be emptied: %s", pin.name, secret.name, keyed, exc)
            continue
        log.info("pin %s: emptied its version under the older cache secret %s (record %s)",
                 pin.name, secret.name, keyed)


async def _check_present(net: NetworkClient, store_paths: Iterable[str]) -> None:
    """Refuse paths whose record the network does not hold (at most
    :data:`CHECK_CONCURRENCY` lookups at a time)."""
    slots = asyncio.Semaphore(CHECK_CONCURRENCY)

    async def one(path: str) -> str | None:
        async with slots:
            try:
                await fetch_record(net, record_key(_store_path(path).hash_part))
            except NotFoundError:
                return path
            return None

    missing = [p for p in await asyncio.gather(*(one(p) for p in store_paths)) if p]
    if missing:
        raise PinError(f"not in the network (push them first): {', '.join(missing)}")


async def pin_paths(net: NetworkClient, publisher: Publisher, name: str,
                    store_paths: Sequence[str], keep: int | None = None, *,
                    check_present: bool = True) -> PinChange:
    """Pin ``store_paths`` under ``name``: they become its newest paths.

    ``nixshard pin add`` and ``nixshard push --pin NAME`` (with the paths it
    pushed) call this.  The pin is created when absent; paths it already holds
    move to the front; beyond ``keep`` the oldest are dropped.

    Args:
        net: a client of the network (with the keyring, in a private cache).
        publisher: signs the pin record (a publisher the nodes accept).
        store_paths: full store paths, newest first.
        keep: the most paths the pin holds from now on (at least 1); None keeps
            the pin's limit (none for a new pin).
        check_present: refuse paths whose record the network does not hold.

    Returns:
        What changed (:class:`PinChange`).

    Raises:
        PinError: a bad name or path, ``keep`` below 1, paths not in the network,
            more than :data:`MAX_PIN_PATHS`, or the pin's newest version signed
            far ahead of this clock.
        StorageNetworkError: the pin could not be read or written (fewer than
            ``record_replicas`` nodes took it; a newer version landed meanwhile).
    """
    check_pin_name(name)
    if keep is not None and keep < 1:
        raise PinError(f"keep must be at least 1, not {keep}")
    paths = [_store_path(p).path for p in store_paths]
    if check_present:
        await _check_present(net, paths)
    found = await _read(net, name)
    before = None if found is None else found[0]
    after, dropped = (before or Pin(name)).with_added(paths, keep)
    size = await _write(net, publisher, after, None if found is None else found[1])
    return PinChange(before, after, dropped, size)


async def unpin(net: NetworkClient, publisher: Publisher, name: str,
                store_path: str | None = None) -> PinChange:
    """Drop ``store_path`` from pin ``name``, or (None) every path: the pin then pins
    nothing and garbage collection treats it as an ordinary record.

    Raises:
        PinError: no pin ``name`` (or it is already empty), or it does not hold
            ``store_path``.
        StorageNetworkError: as :func:`pin_paths`.
    """
    found = await _read(net, name)
    if found is None or not found[0].paths:
        raise PinError(f"there is no pin named {name}")
    before, created = found
    after = before.without(store_path)
    dropped = tuple(p for p in before.paths if p not in after.paths)
    size = await _write(net, publisher, after, created)
    return PinChange(before, after, dropped, size)

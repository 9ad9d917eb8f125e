"""Step 2 of garbage collection: decide which records expire, then write their tombstones.

**The rule.**  A live record is *due* when its signed lease ended at or
before ``t0`` (``expires``, :mod:`storage_network.wire.record`), when its
signed ``created`` time is before ``t0 - max_age``, or when the key's last
read (the latest atime over the nodes listing it) is before ``t0 - max_idle``.
A record whose lease ended (*lapsed*) expires whatever needs it: readers
already treat it as absent, so no closure keeps it, and it keeps nothing.

**Closure (with a link reader).**  The network does not know what a
record's metadata means; the caller may say it with a :data:`LinkReader`:
called with each live record (its metadata opened, in a private cache), it
answers the plain keys of the records this one *needs* while it stays (to
nixshard: the hash parts of a narinfo's References), whether the record is
a *pin* (a named record that never expires and keeps what it names), and a
label for reports; or None for a record it does not know (to nixshard: a
build log), which follows the rule alone and needs nothing.  The *kept set*
is then every live record that is not due, plus every pin, closed over
*needs*: a due record in it is *retained* (:class:`RetainedRecord`, with
why), and only due records outside it expire.

A private cache's closure is read one of two ways.  With the keyring, each
record is opened before the reader sees it and the needed plain keys are
mapped to the keyed key of each secret of the keyring (a reference may have
been sealed under an older secret).  Without it, the reader gets each record
as stored and reads the links its publisher wrote in the clear
(:func:`~storage_network.wire.sealed_metadata.public_links`: keyed keys,
already under every secret, used as they are).  A kept record whose links
cannot be read (its metadata does not open; without the keyring, sealed
metadata version 1, which carries no links in the clear) leaves the closure
incomplete (:attr:`ExpiryPlan.unread`): :mod:`storage_network.upkeep.gc`
then expires nothing unless forced.

**Deleting.**  A due record is deleted by writing a signed tombstone the way
a record is written (:func:`storage_network.write.record_write.write_version`),
then to every other node still listing a copy; a tombstone that is already
the newest version but not yet on enough nodes is completed the same way.
With links, records are deleted referrers first (:func:`expire_in_order`):
a record whose tombstone is refused (a newer version landed since the
inventory) stays, and so does everything it needs that has not gone yet.
The stripes of every key that stays are collected as live for the sweep
(:mod:`storage_network.upkeep.gc` has the whole story).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

from storage_network.client import NetworkClient
from storage_network.coding.sealing import Keyring
from storage_network.errors import NodeError, RecordError
from storage_network.nodes.placement import record_window
from storage_network.upkeep.gc_report import (
    ExpiredRecord,
    GcReport,
    KeptRecord,
    PinSummary,
    RetainedRecord,
)
from storage_network.upkeep.inventory import Inventory, RecordCopy
from storage_network.wire.record import Record, open_record, seal_tombstone
from storage_network.wire.sealed_metadata import (
    is_sealed,
    open_sealed_record,
    sealing_secret_id,
)
from storage_network.wire.write_auth import Publisher
from storage_network.write.record_write import write_version

log = logging.getLogger("nixshard.gc")


class RecordLinks(Protocol):
    """What a live record says about other records, as the caller reads its metadata.

    Any object with these three attributes will do (to nixshard:
    :class:`nix_records.retention.PathLinks`).
    """

    @property
    def needs(self) -> Collection[str]:
        """Plain keys of the records this one needs while it stays (itself may be
        among them: it is ignored)."""

    @property
    def pin(self) -> str | None:
        """The pin's name when the record is a pin (it never expires and keeps every
        record it needs), else None."""

    @property
    def label(self) -> str:
        """How reports name the record (to nixshard: a store-path basename)."""


LinkReader = Callable[[Record], "RecordLinks | None"]
"""Reads a live record's links: called with the record (in a private cache with the
keyring: its metadata opened, its key still the keyed one; without the keyring: as
stored, its metadata sealed, and *needs* are then keyed keys read from
:func:`~storage_network.wire.sealed_metadata.public_links`); None for a record it does
not know, which then follows the age and idle rule alone.  It must not raise for bad
metadata (a record it cannot parse is one it does not know), except
:class:`~storage_network.errors.RecordError` for a record whose links exist but cannot
be read (sealed metadata version 1 without the keyring): that record's closure is then
unknown (:attr:`ExpiryPlan.unread`)."""


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f} d"


def _lapsed(record: Record, t0: float) -> str | None:
    """Why ``record``'s lease makes it due at ``t0`` (unix seconds), or None."""
    if record.expires is None or not record.expired(t0):
        return None
    return f"lease: ended {_days(t0 - record.expires)} ago"


def due(record: Record, inv: Inventory, t0: float, max_age: float | None,
        max_idle: float | None) -> str | None:
    """Why the lease, age or idle rule expires the live record ``record`` at ``t0``
    (unix seconds; ``max_age``, ``max_idle`` in seconds, None: no limit), or None."""
    lapsed = _lapsed(record, t0)
    if lapsed is not None:
        return lapsed
    if max_age is not None and record.created < t0 - max_age:
        return f"age: created {_days(t0 - record.created)} ago (max {_days(max_age)})"
    if max_idle is not None:
        last_read = inv.last_read[record.key]
        if last_read < t0 - max_idle:
            return f"idle: last read {_days(t0 - last_read)} ago (max {_days(max_idle)})"
    return None


@dataclass
class ExpiryPlan:
    """What step 2 decided from the inventory, before writing anything.

    Attributes:
        expiring: key -> why it expires (``age: ...``, ``idle: ...``), for the live
            records that go.
        retained: key -> the due records that stay, with why.
        needs: key -> the keys (as stored) of the live records it needs, for every
            live record whose links were read (empty without a reader).
        labels: key -> the record's label from the reader.
        pins: the pins found.
        unread: key -> why the links of a live record that stays could not be
            read (the closure is then incomplete).
        closure: whether links were read at all.
    """

    expiring: dict[str, str] = field(default_factory=dict)
    retained: dict[str, RetainedRecord] = field(default_factory=dict)
    needs: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    pins: list[PinSummary] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)
    closure: bool = False

    def label(self, key: str) -> str:
        """The record's label, else its key."""
        return self.labels.get(key, key)

    def retain(self, key: str, expiry: str, why: str) -> None:
        """Keep the due record ``key`` (``expiry``: why it was due) because ``why``."""
        self.retained[key] = RetainedRecord(key, self.labels.get(key), expiry, why)


def _opened(record: Record, keyring: Keyring | None) -> Record:
    """``record`` with its metadata opened under ``keyring`` (None: a public network,
    returned as is), keeping its keyed key (:func:`open_sealed_record`).

    Raises:
        RecordError: the metadata is not sealed, or the record does not open
            (SealError).
    """
    if keyring is None:
        return record
    if not is_sealed(record.metadata):
        raise RecordError(f"record {record.key}: its metadata is not sealed, in a private "
                          "network")
    return open_sealed_record(keyring, record)


def _stored_keys(plain: str, keyring: Keyring | None) -> list[str]:
    """The keys a record of plain key ``plain`` may be stored under."""
    if keyring is None:
        return [plain]
    return [secret.record_key(plain) for secret in keyring]


def _closure(start: list[str], needs: dict[str, list[str]]) -> set[str]:
    """Every key reachable from ``start`` over ``needs`` (``start`` included)."""
    seen = set(start)
    queue = deque(start)
    while queue:
        for need in needs.get(queue.popleft(), ()):
            if need not in seen:
                seen.add(need)
                queue.append(need)
    return seen


def _secret_rank(record: Record, keyring: Keyring | None) -> int:
    """Where the secret that sealed ``record`` stands in ``keyring`` (0: the newest;
    0 too on a public network; past the end: a secret the keyring lacks)."""
    if keyring is None:
        return 0
    secret_id = sealing_secret_id(record.metadata)
    secret = None if secret_id is None else keyring.by_id(secret_id)
    return len(keyring) if secret is None else keyring.index(secret)


def _settle_pins(pins: dict[str, str], named: dict[str, int], inv: Inventory,
                 needs: dict[str, list[str]], keyring: Keyring | None = None) -> None:
    """Keep in ``pins`` (key -> name) only the pins that count.  Of several records
    pinning one name (a private cache's pin written under two secrets), only the one
    readers see counts: the one under the newest secret of ``keyring`` (readers try
    the newest first), the newest (largest signed ``created``) of those; the others
    need nothing.  A pin that names nothing (``named``: key -> how many keys it
    names) is no pin: it follows the age and idle rule like any record."""
    def order(key: str) -> tuple[int, tuple[int, bytes]]:
        record = inv.records[key]
        return -_secret_rank(record, keyring), record.version

    newest: dict[str, str] = {}
    for key, name in sorted(pins.items()):
        other = newest.get(name)
        if other is None or order(key) > order(other):
            newest[name] = key
    for key in list(pins):
        if newest[pins[key]] != key:
            needs[key] = []
            del pins[key]
        elif not named[key]:
            del pins[key]


def plan_expiry(inv: Inventory, t0: float, max_age: float | None, max_idle: float | None,
                reader: LinkReader | None = None,
                keyring: Keyring | None = None) -> ExpiryPlan:
    """Decide which live records of ``inv`` expire at ``t0`` (module docstring).

    Args:
        t0: the collection's start, unix seconds.
        max_age, max_idle: the rule's limits in seconds (None: no limit).
        reader: reads each live record's links; None: the rule alone decides.
        keyring: a private network's keyring (records are opened under it and
            needed keys mapped to each secret's keyed key); None on a public one,
            and on a private one read without the secret (the reader then reads
            the records' public links, :data:`LinkReader`).

    CPU only (opens and parses every live record with a reader): run it on a
    thread for a large inventory.
    """
    plan = ExpiryPlan(closure=reader is not None)
    rule = {key: due(record, inv, t0, max_age, max_idle) for key, record in inv.records.items()}
    lapsed = {key for key, record in inv.records.items() if _lapsed(record, t0) is not None}
    if reader is None:
        plan.expiring = {key: why for key, why in rule.items() if why is not None}
        return plan
    pins: dict[str, str] = {}
    pin_paths: dict[str, int] = {}
    unread: dict[str, str] = {}
    for key, record in sorted(inv.records.items()):
        try:
            links = reader(_opened(record, keyring))
        except RecordError as exc:
            unread[key] = str(exc)
            continue
        if links is None:
            continue
        plan.labels[key] = links.label
        plan.needs[key] = sorted({stored for plain in links.needs
                                  for stored in _stored_keys(plain, keyring)
                                  if stored != key and stored in inv.records})
        if links.pin is not None and key not in lapsed:
            pins[key] = links.pin
            pin_paths[key] = len(set(links.needs))
    _settle_pins(pins, pin_paths, inv, plan.needs, keyring)
    # The closure of the pins first, so a record both pinned and needed by another
    # record says it is pinned; then that of the records that are not due.
    origin: dict[str, str | None] = {}
    for roots in (sorted(pins, key=lambda k: (pins[k], k)),
                  sorted(key for key, why in rule.items() if why is None)):
        queue = deque(key for key in roots if key not in origin)
        origin.update((key, pins.get(key)) for key in queue)
        while queue:
            key = queue.popleft()
            pin = origin[key]
            for need in plan.needs.get(key, ()):
                if need in origin or need in lapsed:
                    continue
                origin[need] = pin
                queue.append(need)
                expiry = rule[need]
                if expiry is None:
                    continue
                if pin is None:
                    why = f"referenced by {plan.label(key)}"
                elif key in pins:
                    why = f"pinned by {pin}"
                else:
                    why = f"pinned by {pin} (referenced by {plan.label(key)})"
                plan.retain(need, expiry, why)
    for key, name in pins.items():
        expiry = rule[key]
        if expiry is not None:
            plan.retain(key, expiry, f"a pin ({name}): pins do not expire")
        plan.pins.append(PinSummary(name, key, pin_paths[key],
                                    len(_closure([key], plan.needs)) - 1))
    plan.pins.sort(key=lambda p: (p.name, p.key))
    plan.expiring = {key: why for key, why in rule.items()
                     if why is not None and key not in origin}
    plan.unread = {key: why for key, why in unread.items() if key not in plan.expiring}
    return plan


async def _spread(net: NetworkClient, publisher: Publisher, key: str, data: bytes,
                  nodes: list[str], report: GcReport, limit: asyncio.Semaphore) -> list[str]:
    """Put the tombstone ``data`` on ``nodes`` (old copies outside the window's R);
    returns the nodes that took it, a kept-copy line for each other."""
    took = []
    for node_id in nodes:
        try:
            async with limit:
                await net.nodes[node_id].put_record(key, data, publisher)
        except NodeError as exc:
            report.kept_records.append(KeptRecord(key, node_id, f"old copy stays: {exc}"))
            continue
        took.append(node_id)
    return took


def keep(held: dict[str, RecordCopy], live: set[bytes]) -> None:
    """Every stripe of the record copies in ``held`` stays (goes to ``live``)."""
    for copy in held.values():
        live.update(ref.root for ref in copy.record.manifest.chunks)


async def expire_key(net: NetworkClient, publisher: Publisher, key: str,
                     held: dict[str, RecordCopy], inv: Inventory, report: GcReport,
                     limit: asyncio.Semaphore, reason: str, label: str | None = None) -> bool:
    """Delete the live record ``key`` (due: ``reason``) with a tombstone; a dry run only
    notes it.

    Returns:
        True when it is deleted (or, dry run, would be): an :class:`ExpiredRecord`
        is in ``report``.  False when it stays (a newer version was written since
        the inventory, or the tombstone reached fewer than ``record_replicas``
        nodes): a :class:`KeptRecord` per copy is in ``report``; the caller keeps
        its stripes.  Never raises for a node.
    """
    top = inv.records[key]
    copies = sorted(node_id for node_id, copy in held.items() if not copy.record.tombstone)
    if report.dry_run:
        report.expired.append(ExpiredRecord(key, reason, tuple(copies), label))
        return True
    man = top.manifest
    data = seal_tombstone(publisher, key, man.codec, man.k, man.m,
                          created=max(int(report.started) - 1, top.created + 1))
    tomb = open_record({publisher.name: publisher.public}, key, data)
    async with limit:
        outcome = await write_version(net, publisher, key, data, tomb)
    if outcome.superseded is not None or len(outcome.stored) < net.network.record_replicas:
        why = ("a newer version was written since it was read"
               if outcome.superseded is not None else
               f"tombstone on {len(outcome.stored)} of {net.network.record_replicas} "
               f"nodes: {outcome.failure_text()}")
        for node_id in copies:
            report.kept_records.append(KeptRecord(key, node_id, why))
        return False
    rest = [node_id for node_id in copies if node_id not in outcome.stored]
    gone = set(copies) & set(outcome.stored)
    gone.update(await _spread(net, publisher, key, data, rest, report, limit))
    report.expired.append(ExpiredRecord(key, reason, tuple(sorted(gone)), label))
    log.info("expired record %s (%s): tombstone on %s", key, reason,
             ", ".join(sorted(outcome.stored)))
    return True


async def expire_in_order(net: NetworkClient, publisher: Publisher, plan: ExpiryPlan,
                          inv: Inventory, report: GcReport, live: set[bytes],
                          limit: asyncio.Semaphore) -> None:
    """Delete ``plan.expiring``, each record only after every expiring record that needs
    it (waves; a cycle, which Nix references never form, goes as one wave).

    A record that stays (:func:`expire_key` False) keeps every record it needs that
    has not gone yet: they move to ``plan.retained`` (why: ``referenced by <label>,
    whose deletion failed``).  The stripes of every record that stays go to ``live``.
    """
    remaining = set(plan.expiring)
    referrers: dict[str, set[str]] = {key: set() for key in remaining}
    for key in remaining:
        for need in plan.needs.get(key, ()):
            if need in remaining:
                referrers[need].add(key)
    while remaining:
        wave = sorted(key for key in remaining if not referrers[key] & remaining)
        if not wave:
            wave = sorted(remaining)
        results = await asyncio.gather(*(
            expire_key(net, publisher, key, inv.copies[key], inv, report, limit,
                       plan.expiring[key], plan.labels.get(key)) for key in wave))
        remaining.difference_update(wave)
        for key, gone in zip(wave, results, strict=True):
            if gone:
                continue
            keep(inv.copies[key], live)
            for need in sorted(_closure([key], plan.needs) & remaining):
                plan.retain(need, plan.expiring[need],
                            f"referenced by {plan.label(key)}, whose deletion failed")
                remaining.discard(need)
                keep(inv.copies[need], live)


async def settle_tombstone(net: NetworkClient, publisher: Publisher, key: str,
                           held: dict[str, RecordCopy], inv: Inventory, report: GcReport,
                           limit: asyncio.Semaphore) -> bool:
    """Make sure the tombstone that is the newest version of ``key`` is on
    ``record_replicas`` nodes of the window and replaced every old copy; True when
    it is committed (the key's stripes may go).  A dry run assumes it will be."""
    top = inv.tombstones[key]
    having = set(inv.holders_of_newest(key))
    window = {node.id for node in record_window(net.network, key)}
    stale = sorted(node_id for node_id in held if node_id not in having)
    if len(having & window) >= net.network.record_replicas and not stale:
        return True
    if report.dry_run:
        return True
    data = next(copy.data for node_id, copy in held.items() if node_id in having)
    async with limit:
        outcome = await write_version(net, publisher, key, data, top)
    if outcome.superseded is not None or len(outcome.stored) < net.network.record_replicas:
        return False
    await _spread(net, publisher, key, data,
                  [node_id for node_id in stale if node_id not in outcome.stored], report, limit)
    return True

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
scan) stays, and so does everything it needs that has not gone yet.
The stripes of every key that stays are collected as live for the sweep
(:mod:`storage_network.upkeep.gc` has the whole story).

**Where it is decided.**  All of it runs on a
:class:`~storage_network.upkeep.record_table.RecordTable` (the scan's records
on disk): the links are noted as the scan goes (:func:`note_links`), the
closure is walked in SQL one level at a time (the first parent in (pin, key)
order names the reason), and the deletion waves are queries over the needs
of the keys still pending, so the collector's memory does not grow with the
network; what it reports (expired and retained records) is its output.
"""


from __future__ import annotations

import asyncio
import logging
import sqlite3
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
from storage_network.upkeep.record_table import RecordTable
from storage_network.wire.record import Record, open_record, seal_tombstone
from storage_network.wire.sealed_metadata import (
    is_sealed,
    open_sealed_record,
    sealing_secret_id,
)
from storage_network.wire.write_auth import Publisher, PublisherKey
from storage_network.write.record_write import write_version

log = logging.getLogger("nixshard.gc")

KEYS_AT_ONCE = 256
"""Expiring keys deleted at once (their tombstone writes in flight are bounded by
the collector's request limit)."""


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


def due_rule(t0: float, max_age: float | None,
             max_idle: float | None) -> Callable[[int, int | None, float], str | None]:
    """The lease, age and idle rule at ``t0`` (unix seconds; ``max_age``, ``max_idle``
    in seconds, None: no limit): a function of a live record's signed ``created``,
    ``expires`` and last read (unix seconds) that says why it is due, or None."""
    def why(created: int, expires: int | None, last_read: float) -> str | None:
        if expires is not None and expires <= t0:
            return f"lease: ended {_days(t0 - expires)} ago"
        if max_age is not None and created < t0 - max_age:
            return f"age: created {_days(t0 - created)} ago (max {_days(max_age)})"
        if max_idle is not None and last_read < t0 - max_idle:
            return f"idle: last read {_days(t0 - last_read)} ago (max {_days(max_idle)})"
        return None
    return why


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


def _secret_rank(record: Record, keyring: Keyring | None) -> int:
    """Where the secret that sealed ``record`` stands in ``keyring`` (0: the newest;
    0 too on a public network; past the end: a secret the keyring lacks)."""
    if keyring is None:
        return 0
    secret_id = sealing_secret_id(record.metadata)
    secret = None if secret_id is None else keyring.by_id(secret_id)
    return len(keyring) if secret is None else keyring.index(secret)


def note_links(table: RecordTable, record: Record, reader: LinkReader,
               keyring: Keyring | None = None) -> None:
    """Read the live record ``record``'s links with ``reader`` into ``table`` (its
    metadata opened under ``keyring`` first, and the plain keys it needs mapped to
    the key under each secret; None: a public network, or a private one read without
    the secret, :data:`LinkReader`).  A record the reader does not know gets no
    links; one whose links cannot be read is noted as unread, with why.

    CPU only (opens and parses the record).
    """
    try:
        links = reader(_opened(record, keyring))
    except RecordError as exc:
        table.add_links(record.key, label=None, unread=str(exc))
        return
    if links is None:
        return
    table.add_links(record.key, label=links.label, pin=links.pin,
                    named=len(set(links.needs)), rank=_secret_rank(record, keyring),
                    needs={stored for plain in links.needs
                           for stored in _stored_keys(plain, keyring)})


@dataclass
class ExpiryPlan:
    """What step 2 decided from the record table, before writing anything.

    The keys to expire are marked ``expiring`` in the table (with why in ``due``:
    ``age: ...``, ``idle: ...``, ``lease: ...``), the due records that stay carry why
    in its ``retained`` column.

    Attributes:
        table: the record table it was planned on.
        pins: the pins found.
        unread: key -> why the links of a live record that stays could not be
            read (the closure is then incomplete).
        closure: whether links were read at all.
    """

    table: RecordTable
    pins: list[PinSummary] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)
    closure: bool = False

    def label(self, key: str) -> str:
        """The record's label, else its key."""
        return self.table.label(key) or key

    def needs_of(self, key: str) -> list[str]:
        """The keys (as stored) of the live records ``key`` needs, sorted."""
        return self.table.needs_of(key)

    def retain(self, key: str, why: str) -> None:
        """Keep the due record ``key`` because ``why``."""
        self.table.db.execute("UPDATE keys SET retained = ? WHERE key = ?", (why, key))

    def expiring_count(self) -> int:
        """Live records that go."""
        return self.table.count("expiring = 1")

    @property
    def expiring(self) -> dict[str, str]:
        """Key -> why, for every live record that goes (all in memory: for small
        tables)."""
        return dict(self.table.db.execute("SELECT key, due FROM keys WHERE expiring = 1"))

    def retained_count(self) -> int:
        """Due records that stay."""
        return self.table.count("retained IS NOT NULL")

    def retained_first(self, limit: int | None = None) -> list[RetainedRecord]:
        """The due records that stay, with why, in key order (the first ``limit``;
        None: all of them)."""
        return [RetainedRecord(key, label, expiry, why) for key, label, expiry, why in
                self.table.db.execute(
                    "SELECT k.key, l.label, k.due, k.retained FROM keys k LEFT JOIN links l "
                    "ON l.key = k.key WHERE k.retained IS NOT NULL ORDER BY k.key LIMIT ?",
                    (-1 if limit is None else limit,))]

    @property
    def retained(self) -> dict[str, RetainedRecord]:
        """Key -> every due record that stays (all in memory: for small tables)."""
        return {r.key: r for r in self.retained_first()}

    def cancel(self) -> None:
        """Expire nothing after all."""
        self.table.db.execute("UPDATE keys SET expiring = 0")


def _settle_pins(db: sqlite3.Connection) -> None:
    """Fill the table ``pins`` with the pins that count.  Of several records pinning
    one name (a private cache's pin written under two secrets), only the one readers
    see counts: the one under the newest secret (smallest rank; readers try the
    newest first), the newest (largest signed ``created``, then digest) of those;
    the others need nothing.  A lapsed pin is no pin, nor is one that names nothing:
    they follow the age and idle rule like any record."""
    db.execute("CREATE TEMP TABLE pins(key TEXT PRIMARY KEY, name TEXT NOT NULL, "
               "named INTEGER NOT NULL, best INTEGER NOT NULL) WITHOUT ROWID")
    db.execute("INSERT INTO pins SELECT l.key, l.pin, l.named, row_number() OVER "
               "(PARTITION BY l.pin ORDER BY l.rank, k.created DESC, k.digest DESC) = 1 "
               "FROM links l JOIN keys k ON k.key = l.key "
               "WHERE l.pin IS NOT NULL AND k.lapsed = 0")
    db.execute("DELETE FROM needs WHERE key IN (SELECT key FROM pins WHERE best = 0)")
    db.execute("DELETE FROM pins WHERE best = 0 OR named = 0")


def _reach(db: sqlite3.Connection, depth: int) -> int:
    """Breadth-first from the ``origin`` rows at ``depth``: every live, unlapsed record
    they need that has no origin yet gets one (the first parent in (pin, key) order
    wins), one level at a time.  Returns the deepest level reached."""
    while True:
        added = db.execute(
            "INSERT OR IGNORE INTO origin(key, pin, via, depth) "
            "SELECT n.need, o.pin, o.key, ? FROM origin o JOIN needs n ON n.key = o.key "
            "JOIN keys k ON k.key = n.need WHERE o.depth = ? AND k.lapsed = 0 "
            "ORDER BY o.pin, o.key, n.need", (depth + 1, depth)).rowcount
        if not added:
            return depth
        depth += 1


def _closure_size(db: sqlite3.Connection, key: str) -> int:
    """How many records ``key`` needs, transitively (itself not counted)."""
    got: int = db.execute("WITH RECURSIVE c(key) AS (SELECT ? UNION SELECT n.need FROM needs n "
                          "JOIN c ON n.key = c.key) SELECT count(*) - 1 FROM c",
                          (key,)).fetchone()[0]
    return got


def plan_expiry(table: RecordTable, t0: float, max_age: float | None, max_idle: float | None,
                *, closure: bool = False) -> ExpiryPlan:
    """Decide which live records of ``table`` expire at ``t0`` (module docstring).

    Args:
        t0: the collection's start, unix seconds.
        max_age, max_idle: the rule's limits in seconds (None: no limit).
        closure: links were read into the table (:func:`note_links`, for every live
            record); False: the rule alone decides.

    Runs SQL over the whole table: run it on a thread.  What expires and what is
    retained stay in the table; the plan holds the pins and the unread records.
    """
    db = table.db
    plan = ExpiryPlan(table, closure=closure)
    db.create_function("due_rule", 3, due_rule(t0, max_age, max_idle), deterministic=True)
    db.execute("UPDATE keys SET due = due_rule(created, expires, last_read), "
               "lapsed = (expires IS NOT NULL AND expires <= ?) WHERE tombstone = 0", (t0,))
    table.index_needs()
    if closure:
        db.execute("DELETE FROM needs WHERE need = key OR need NOT IN "
                   "(SELECT key FROM keys WHERE tombstone = 0)")
        _settle_pins(db)
        # The closure of the pins first, so a record both pinned and needed by another
        # record says it is pinned; then that of the records that are not due.
        db.execute("CREATE TEMP TABLE origin(key TEXT PRIMARY KEY, pin TEXT, via TEXT, "
                   "depth INTEGER NOT NULL) WITHOUT ROWID")
        db.execute("CREATE INDEX origin_depth ON origin(depth)")
        db.execute("INSERT INTO origin SELECT key, name, NULL, 0 FROM pins ORDER BY name, key")
        depth = _reach(db, 0) + 1
        db.execute("INSERT OR IGNORE INTO origin SELECT key, NULL, NULL, ? FROM keys "
                   "WHERE tombstone = 0 AND due IS NULL ORDER BY key", (depth,))
        _reach(db, depth)
        db.execute(
            "UPDATE keys SET retained = CASE WHEN o.pin IS NULL "
            "THEN 'referenced by ' || coalesce(v.label, o.via) "
            "WHEN p.key IS NOT NULL THEN 'pinned by ' || o.pin "
            "ELSE 'pinned by ' || o.pin || ' (referenced by ' || coalesce(v.label, o.via) "
            "|| ')' END "
            "FROM origin o LEFT JOIN pins p ON p.key = o.via LEFT JOIN links v ON v.key = o.via "
            "WHERE o.key = keys.key AND o.via IS NOT NULL AND keys.due IS NOT NULL")
        for key, name, named, expiry in db.execute(
                "SELECT p.key, p.name, p.named, k.due FROM pins p JOIN keys k ON k.key = p.key "
                "ORDER BY p.name, p.key").fetchall():
            if expiry is not None:
                plan.retain(key, f"a pin ({name}): pins do not expire")
            plan.pins.append(PinSummary(name, key, named, _closure_size(db, key)))
        kept = "key IN (SELECT key FROM origin)"
    else:
        kept = "0"
    db.execute(f"UPDATE keys SET expiring = 1 WHERE tombstone = 0 AND due IS NOT NULL "
               f"AND NOT ({kept})")
    plan.unread = dict(db.execute("SELECT l.key, l.unread FROM links l JOIN keys k ON "
                                  "k.key = l.key WHERE l.unread IS NOT NULL AND k.expiring = 0"))
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


async def expire_key(net: NetworkClient, publisher: Publisher, key: str, table: RecordTable,
                     report: GcReport, limit: asyncio.Semaphore, reason: str,
                     label: str | None = None) -> bool:
    """Delete the live record ``key`` (due: ``reason``) with a tombstone; a dry run only
    notes it.

    Returns:
        True when it is deleted (or, dry run, would be): an :class:`ExpiredRecord`
        is in ``report``.  False when it stays (a newer version was written since
        the scan, or the tombstone reached fewer than ``record_replicas``
        nodes): a :class:`KeptRecord` per copy is in ``report``; the caller keeps
        its stripes.  Never raises for a node.
    """
    top = table.row(key)
    copies = sorted(node_id for node_id, (_, tomb) in table.copies(key).items() if not tomb)
    if report.dry_run:
        report.note_expired(ExpiredRecord(key, reason, tuple(copies), label))
        return True
    data = seal_tombstone(publisher, key, top.codec, top.k, top.m,
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
    report.note_expired(ExpiredRecord(key, reason, tuple(sorted(gone)), label))
    log.info("expired record %s (%s): tombstone on %s", key, reason,
             ", ".join(sorted(outcome.stored)))
    return True


async def expire_in_order(net: NetworkClient, publisher: Publisher, plan: ExpiryPlan,
                          report: GcReport, limit: asyncio.Semaphore) -> None:
    """Delete the keys marked expiring in ``plan.table``, each record only after every
    expiring record that needs it (waves; a cycle, which Nix references never form,
    goes as one wave), :data:`KEYS_AT_ONCE` at a time.

    A record that stays (:func:`expire_key` False) keeps every record it needs that
    has not gone yet: they are retained (why: ``referenced by <label>, whose
    deletion failed``).  The stripes of every record that stays join the
    table's live set.  The queries over all pending keys run on a worker thread;
    nothing else may use the table meanwhile.
    """
    table, db = plan.table, plan.table.db
    await asyncio.to_thread(_start_waves, db)
    while await asyncio.to_thread(_next_wave, db):
        failed: list[str] = []
        after = ""
        while chunk := db.execute(
                "SELECT w.key, k.due, l.label FROM wave w JOIN keys k ON k.key = w.key "
                "LEFT JOIN links l ON l.key = w.key WHERE w.key > ? ORDER BY w.key LIMIT ?",
                (after, KEYS_AT_ONCE)).fetchall():
            after = chunk[-1][0]
            keys = [key for key, _, _ in chunk]
            results = await asyncio.gather(*(
                expire_key(net, publisher, key, table, report, limit, reason, label)
                for key, reason, label in chunk))
            failed.extend(key for key, gone in zip(keys, results, strict=True) if not gone)
        await asyncio.to_thread(_end_wave, plan, failed)


def _start_waves(db: sqlite3.Connection) -> None:
    """Every expiring key is pending (blocking)."""
    db.execute("CREATE TEMP TABLE pending(key TEXT PRIMARY KEY) WITHOUT ROWID")
    db.execute("CREATE TEMP TABLE wave(key TEXT PRIMARY KEY) WITHOUT ROWID")
    db.execute("INSERT INTO pending SELECT key FROM keys WHERE expiring = 1")


def _next_wave(db: sqlite3.Connection) -> bool:
    """Fill ``wave`` with the pending keys no pending key needs (all pending keys when
    every one is needed: a cycle); False when nothing is pending (blocking)."""
    if not db.execute("SELECT 1 FROM pending LIMIT 1").fetchone():
        return False
    db.execute("DELETE FROM wave")
    db.execute("INSERT INTO wave SELECT p.key FROM pending p WHERE NOT EXISTS "
               "(SELECT 1 FROM needs n JOIN pending q ON q.key = n.key WHERE n.need = p.key)")
    if not db.execute("SELECT 1 FROM wave LIMIT 1").fetchone():
        db.execute("INSERT INTO wave SELECT key FROM pending")
    return True


def _end_wave(plan: ExpiryPlan, failed: list[str]) -> None:
    """The wave is no longer pending; each of ``failed`` (its deletion failed) stays
    with every pending record it needs, which are retained (blocking)."""
    table, db = plan.table, plan.table.db
    db.execute("DELETE FROM pending WHERE key IN (SELECT key FROM wave)")
    for key in failed:
        table.keep(key)
        for (need,) in db.execute(
                "WITH RECURSIVE c(key) AS (SELECT ? UNION SELECT n.need FROM needs n "
                "JOIN c ON n.key = c.key) SELECT c.key FROM c JOIN pending p "
                "ON p.key = c.key ORDER BY c.key", (key,)).fetchall():
            plan.retain(need, f"referenced by {plan.label(key)}, whose deletion failed")
            db.execute("DELETE FROM pending WHERE key = ?", (need,))
            table.keep(need)


async def settle_tombstone(net: NetworkClient, publisher: Publisher, key: str,
                           table: RecordTable, trusted: dict[str, PublisherKey],
                           report: GcReport, limit: asyncio.Semaphore) -> bool:
    """Make sure the tombstone that is the newest version of ``key`` is on
    ``record_replicas`` nodes of the window and replaced every old copy; True when
    it is committed (the key's stripes may go).  A dry run assumes it will be.

    Args:
        trusted: the publisher keys the scan verified records under (the tombstone
            is opened again from its bytes in the table).
    """
    top = table.row(key)
    held = table.copies(key)
    having = {node_id for node_id, (digest, _) in held.items() if digest == top.digest}
    window = {node.id for node in record_window(net.network, key)}
    stale = sorted(node_id for node_id in held if node_id not in having)
    if len(having & window) >= net.network.record_replicas and not stale:
        return True
    if report.dry_run:
        return True
    if top.tomb is None:
        return False
    try:
        tomb = open_record(trusted, key, top.tomb)
    except RecordError:
        return False
    async with limit:
        outcome = await write_version(net, publisher, key, top.tomb, tomb)
    if outcome.superseded is not None or len(outcome.stored) < net.network.record_replicas:
        return False
    await _spread(net, publisher, key, top.tomb,
                  [node_id for node_id in stale if node_id not in outcome.stored], report, limit)
    return True

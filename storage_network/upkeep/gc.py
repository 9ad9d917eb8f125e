"""Garbage collection: expire records, then delete the shards no record references.

:func:`collect_garbage` runs in three steps from a start time ``t0``:

1. **Scan.**  Every node lists its records; every listed copy of every
   record is read (with ``X-Nixshard-Peek: 1``, so the collector's reads do
   not count as uses) and verified
   (:class:`~storage_network.upkeep.record_scan.RecordScan`).  A key's newest
   valid version decides what it is: a live record or a tombstone (deleted).
   What the scan finds goes to a
   :class:`~storage_network.upkeep.record_table.RecordTable` on disk, and
   steps 2 and 3 work on it: the collector's memory does not grow with the
   network (its report, the records and shards it names, is its output).
2. **Expiry.**  A live record is due when its signed lease ended at or
   before ``t0`` (its ``expires``: readers already treat it as absent, and
   nothing keeps it), when its signed ``created`` time is
   before ``t0 - max_age``, or when the key's last read (the latest atime
   over the nodes listing it) is before ``t0 - max_idle``.  With a link
   reader (``links``: what each record needs, which records are pins; the
   caller knows what metadata means, this package does not; in a private
   network without the cache secret, what each record's publisher wrote in
   the clear, keyed), the records
   that are not due and the pins are kept with everything they need,
   transitively, and only due records outside that closure expire
   (:mod:`storage_network.upkeep.record_expiry`); they are deleted
   referrers first, and one whose deletion fails keeps what it needs.  A
   due record is deleted by
   writing a signed tombstone (``created`` = one second before ``t0``, so
   a push whose record is sealed in the second the collection starts still
   wins over it; one second past the record when that is later) the way a
   record is written
   (:func:`storage_network.write.record_write.write_version`: the arbiter, then
   the window until ``record_replicas`` nodes hold it), then to every other
   node still listing a copy.  A node that missed the deletion cannot bring
   the record back: readers see the newer tombstone among the answers of
   the window (docs/consistency.md).  When the arbiter holds a newer version
   (a push landed since the scan), the tombstone is refused there and
   written nowhere: the record stays.  A tombstone that is already the
   newest version but not yet on ``record_replicas`` window nodes, or not on
   every node listing the key, is completed the same way.  Tombstones are
   kept (about 200 bytes each).
3. **Sweep.**  The live stripes are those referenced by any record copy of
   a key that is not deleted (a deleted key: its tombstone is on
   ``record_replicas`` window nodes).  Every node lists its shards; a shard
   whose stripe is not live and whose mtime is before ``t0 - grace`` is
   deleted with ``DELETE /shards/<id>?before=<t0 - grace>``: the node
   deletes it only if its mtime is still earlier, checking and unlinking
   under one lock.

When the live set is incomplete (a node could not list its records, a
listed record could not be read or opened) no shard is deleted unless
``force`` is set: an unknown record may reference any shard.  With a link
reader, no record expires either (an unknown record may need any record),
nor when a record that stays has links that cannot be read (its metadata
does not open under the keyring, or, without the keyring, it was sealed
before links were written in the clear); ``force`` expires anyway.

**Why a push racing a collection loses nothing.**  A push touches every
shard it reuses (a signed ``has`` with ``touch``) and writes every shard it
lacks, each of which sets the shard's mtime to now on its node, and only
then writes its record; it refuses to write the record once more than
``gc_grace_seconds / 2`` have passed since the first touch
(:func:`storage_network.write.publish.check_push_window`).  Let ``s`` be that
first touch and ``r`` the record write, ``r - s <= grace / 2``.  If the
record landed before the collector listed records (after ``t0``), it is in
the scan and its stripes are live.  Otherwise ``r >= t0``, so
``s >= t0 - grace / 2 > t0 - grace``: every shard of the push has an mtime
after the cut-off, is skipped by the sweep or refused by its node (412).  A
shard deleted before the push touched it is reported absent by ``has`` and
uploaded again.  The other ``grace / 2`` absorbs clock differences between
publisher, nodes and collector.  This needs ``grace`` >= the network file's
``gc_grace_seconds`` (the CLI's default); a smaller grace (tests use 0) is
safe only when nobody pushes meanwhile.

Records are deleted before the sweep decides, and a dry run assumes every
tombstone write succeeds, so a dry run lists exactly what a real run
started at the same moment on an unchanged network deletes.

Step 2 is :mod:`storage_network.upkeep.record_expiry`, step 3
:mod:`storage_network.upkeep.shard_sweep`; what was done is a
:class:`~storage_network.upkeep.gc_report.GcReport`.
"""

from __future__ import annotations

import asyncio
import functools
import time

from storage_network.client import NetworkClient
from storage_network.upkeep import gc_report
from storage_network.upkeep.gc_report import GcReport
from storage_network.upkeep.record_expiry import (
    LinkReader,
    RecordLinks,
    expire_in_order,
    note_links,
    plan_expiry,
    settle_tombstone,
)
from storage_network.upkeep.record_table import record_table, scan_into
from storage_network.upkeep.shard_sweep import sweep_shards
from storage_network.wire.write_auth import Publisher

__all__ = ["REQUESTS_IN_FLIGHT", "LinkReader", "RecordLinks", "collect_garbage"]

REQUESTS_IN_FLIGHT = 16


async def collect_garbage(net: NetworkClient, publisher: Publisher, *,
                          max_age: float | None, max_idle: float | None, grace: float,
                          dry_run: bool, force: bool = False, now: float | None = None,
                          links: LinkReader | None = None) -> GcReport:
    """Expire records and delete unreferenced shards (see the module docstring).

    Args:
        publisher: signs the deletes (nodes accept deletes from accepted publishers).
        max_age: expire records created more than this many seconds before ``now``.
        max_idle: expire records nobody read for more than this many seconds.
        grace: keep unreferenced shards written or touched less than this many
            seconds before ``now`` (at least the network's ``gc_grace_seconds``
            when pushes may run meanwhile).
        dry_run: decide and report, delete nothing.
        force: sweep shards (and, with ``links``, expire records) even when the
            scan is incomplete.
        now: ``t0``, unix seconds (default: the clock).
        links: reads what each live record needs and whether it is a pin
            (:data:`~storage_network.upkeep.record_expiry.LinkReader`); records
            needed by a record that stays, or by a pin, then stay.  None: the
            age and idle rule alone decides.  In a private network whose
            client holds the keyring, records are opened before ``links``
            sees them; without it, ``links`` gets them sealed and reads the
            links written in the clear
            (:func:`~storage_network.wire.sealed_metadata.public_links`), and a
            record sealed without them (version 1) leaves the closure
            incomplete.

    Raises:
        ValueError: a negative duration.
        RecordTableError: the record table on disk could not be made or written
            (``TMPDIR`` full); the sweep had not started.
    """
    for name, value in (("max_age", max_age), ("max_idle", max_idle), ("grace", grace)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    t0 = time.time() if now is None else now
    report = GcReport(started=t0, dry_run=dry_run, grace=grace)
    limit = asyncio.Semaphore(REQUESTS_IN_FLIGHT)
    keyring = net.keyring if net.network.private else None
    with record_table() as table:
        scan = await scan_into(net, table, None if links is None else
                               functools.partial(note_links, reader=links, keyring=keyring))
        incomplete = ([f"node {n} could not list its records: {why}"
                       for n, why in sorted(scan.unreachable.items())]
                      + [f"record {k} could not be opened: {why}"
                         for k, why in sorted(scan.unopened.items())]
                      + scan.copy_problems)
        plan = await asyncio.to_thread(plan_expiry, table, t0, max_age, max_idle,
                                       closure=links is not None)
        report.closure = plan.closure
        report.pins = plan.pins
        report.skipped.extend(incomplete)  # said once, for the closure and the sweep below

        unread = [f"record {k}: what it references could not be read: {why}"
                  for k, why in sorted(plan.unread.items())]
        due = plan.expiring_count()
        if plan.closure and due and (incomplete or unread):
            report.skipped.extend(unread)
            if force:
                report.skipped.append("closure incomplete, expiring anyway (--force)")
            else:
                report.skipped.append(
                    f"no record expired ({due} due): a record that stays may "
                    "need any of them, and some record could not be read (see above); fix "
                    "the nodes or pass --force")
                plan.cancel()

        await asyncio.to_thread(table.keep_where, "keys.tombstone = 0 AND keys.expiring = 0")

        # Tombstones first, then the expiry (whose queries run on a worker thread:
        # one user of the table at a time).
        for keys in table.keys("tombstone = 1"):
            settled = await asyncio.gather(*(
                settle_tombstone(net, publisher, key, table, scan.trusted, report, limit)
                for key in keys))
            for key, done in zip(keys, settled, strict=True):
                if not done:
                    table.keep(key)
        await expire_in_order(net, publisher, plan, report, limit)
        report.expired.sort(key=lambda e: e.key)
        report.retained = plan.retained_first(gc_report.REPORT_LIMIT)
        report.retained_total = plan.retained_count()
        report.records_kept = table.count("tombstone = 0") - report.expired_total
        report.kept_records.sort(key=lambda k: (k.key, k.node))
        report.live_stripes = table.live_count()

        if incomplete:
            if not force:
                report.skipped.append(
                    "no shard deleted: the live set is incomplete (see above), an unseen "
                    "record may reference any shard; fix the nodes or pass --force")
                return report
            report.skipped.append("live set incomplete, sweeping anyway (--force)")
        report.swept = True
        await sweep_shards(net, publisher, report, table, limit)
    return report

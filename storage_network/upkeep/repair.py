"""Repair: bring every stripe back to n good shards and every key's newest version to its window.

A run (:func:`repair_network`):

1. scans every record into a record table on disk
   (:func:`storage_network.upkeep.record_table.scan_into`: every key's newest
   version, record or tombstone, the nodes holding each version, the stripes
   of the live records), so the run's memory does not grow with the network;
2. locates each stripe's shards (:func:`storage_network.read.locate.locate_shards`,
   which follows the rendezvous ranking past the first n nodes);
3. checks them: every shard claimed by a *suspect* node (one an audit
   found corrupt or missing shards on, :mod:`storage_network.upkeep.audit_findings`;
   every node with ``verify``) is read back and verified
   (:mod:`storage_network.upkeep.shard_check`): one that does not verify, or that
   the node claims and does not serve, counts as missing there (reading
   back rather than trusting the audit's list keeps a second run with the
   same findings from rewriting shards healed by the first);
4. for a stripe missing shards but holding at least k good ones, reads and
   verifies one holder of every other index (the next holder of an index
   when one fails, which then counts as missing as well), decodes the zstd
   frame from k verified fragments, re-encodes it (the code is
   deterministic: the stripe root must come out equal, or nothing is
   written) and stores each missing shard i on its *target*: its home
   (position i of the ranking) if that node answers and holds no good shard
   of the stripe, else the first node past position n of the ranking that
   answers and holds none (then any other such node, in ranking order) — see
   :func:`~storage_network.upkeep.repair_targets.plan_stripe`.  A target
   holding bad bytes of that very shard gets a signed PUT, and the node
   replaces them (``storage_node``); a node that keeps them (one without that
   rule) gets ``DELETE ?before=<now + 1>`` and the PUT again.  Bad copies
   repair did not overwrite are deleted;
5. copies the newest version of every key (the signed bytes as they are, a
   record or a tombstone; nothing is re-signed) by the window rule of
   docs/consistency.md: until ``record_replicas`` nodes of the key's window
   (its first ``record_replicas + m`` nodes) hold it, to the window's
   answering nodes that lack it in ranking order, and to every window node
   holding an older version.

Steps 3 and 4 are :mod:`storage_network.upkeep.stripe_repair`, step 5 is
:mod:`storage_network.upkeep.record_repair`; what was found and done is
a :class:`~storage_network.upkeep.repair_report.RepairReport`.

Stripes are handled in windows of
:data:`~storage_network.upkeep.stripe_repair.WINDOW_STRIPES`: one batch request
per node and window for reads and for writes; memory is a window's shards.
Targets depend only on the ranking, on which nodes answer and on what they
hold, so a run is idempotent, and a run killed halfway and started again
ends where one uninterrupted run would.  Writes are atomic on the nodes, so
a killed run leaves no partial shard.  Every node failure is caught and
reported; nothing raises for a node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from storage_network.client import NetworkClient
from storage_network.upkeep.audit_findings import AuditFindings
from storage_network.upkeep.record_repair import repair_records
from storage_network.upkeep.record_table import record_table, scan_into
from storage_network.upkeep.repair_report import RepairReport
from storage_network.upkeep.stripe_repair import RepairRun, repair_batch
from storage_network.wire.write_auth import Publisher

LOCATE_BATCH = 512
DEFAULT_JOBS = 8


async def repair_network(net: NetworkClient, publisher: Publisher, *, dry_run: bool = False,
                         jobs: int = DEFAULT_JOBS, findings: AuditFindings | None = None,
                         verify: bool = False,
                         on_start: Callable[[int], None] | None = None,
                         progress: Callable[[int], None] | None = None) -> RepairReport:
    """One repair run over the whole network (see the module docstring).

    Args:
        publisher: signs the shard and record writes (nodes accept only listed publishers).
        dry_run: plan only; write nothing (``report.planned`` lists the targets).
            Suspect nodes are still read back (reads change nothing).
        jobs: windows of up to
            :data:`~storage_network.upkeep.stripe_repair.WINDOW_STRIPES` stripes
            handled at once, at most.
        findings: an audit's findings (``nixshard repair --from-audit``): every
            node it found corrupt or missing shards on is read back in full, and
            each shard that does not verify counts as missing.
        verify: read back and verify every shard of every node (a full scrub).
        on_start: called once with the number of stripes to check.
        progress: called with the number of stripes checked, as they are.

    Node failures never raise: they land in ``report.failures`` and
    ``report.unreachable``; stripes with fewer than k good shards found are
    in ``report.lost``.

    Raises:
        RecordTableError: the record table on disk could not be made or written
            (``TMPDIR`` full).
    """
    started = time.monotonic()
    report = RepairReport()
    with record_table() as table:
        scan = await scan_into(net, table)
        report.unreachable.update(scan.unreachable)
        report.failures.extend(f"record {key}: {why}"
                               for key, why in sorted(scan.unopened.items()))
        report.records = table.count("tombstone = 0")
        report.tombstones = table.count("tombstone = 1")
        report.stripes = table.stripe_count()
        if on_start is not None:
            on_start(report.stripes)
        findings = findings or AuditFindings()
        suspects = ({n.id for n in net.network.nodes} if verify
                    else {*findings.suspects, *findings.bad})
        run = RepairRun(net, publisher, report, dry_run, suspects,
                        asyncio.Semaphore(max(1, jobs)), progress or (lambda _n: None))
        for stripes in table.stripe_batches(LOCATE_BATCH):
            await repair_batch(run, stripes)
        await repair_records(net, publisher, table, scan, report, dry_run)
    report.seconds = time.monotonic() - started
    return report

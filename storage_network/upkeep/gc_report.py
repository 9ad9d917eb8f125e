"""What a garbage collection did (or, dry run, would do): :class:`GcReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage_network.wire.listing import ListedShard


@dataclass(frozen=True)
class ExpiredRecord:
    """A record that expired: key, why, and the nodes whose copy a tombstone replaced
    (would replace, dry run).

    ``label`` is how the caller's link reader names the record (to nixshard: the
    store-path basename), None when no reader ran or it did not know the record.
    """

    key: str
    reason: str
    nodes: tuple[str, ...]
    label: str | None = None


@dataclass(frozen=True)
class RetainedRecord:
    """A live record the age or idle rule would expire, kept because a record that
    stays needs it (or because it is a pin).

    Attributes:
        key: the record key.
        label: its name from the link reader (None: unknown).
        expiry: why the rule would have expired it (``age: ...``, ``idle: ...``).
        why: why it stays: ``referenced by <label>``, ``pinned by <name>``,
            ``pinned by <name> (referenced by <label>)``, ``a pin ...``, or
            ``referenced by <label>, whose deletion failed``.
    """

    key: str
    label: str | None
    expiry: str
    why: str


@dataclass(frozen=True)
class PinSummary:
    """A pin the link reader found: its name and record key, how many keys it names
    (``paths``), and how many live records its closure holds (``closure``: the pinned
    records and everything they need, the pin's own record not counted)."""

    name: str
    key: str
    paths: int
    closure: int


@dataclass(frozen=True)
class KeptRecord:
    """An expired record copy that stays: on which node and why (a newer version was
    written since, the tombstone reached too few nodes, a node failed)."""

    key: str
    node: str
    reason: str


REPORT_LIMIT = 10_000
"""Records or shards a report names per list, at most; its totals count every one
(each expiry and deletion is also logged), so a collection of millions of records
reports in bounded memory."""


@dataclass
class NodeSweep:
    """The shard sweep of one node.

    Attributes:
        deleted: shards deleted (dry run: that would be), with sizes: the first
            :data:`REPORT_LIMIT`.
        deleted_count: shards deleted, all of them.
        deleted_bytes: their bytes.
        kept_recent: unreferenced shards kept because they were written or
            touched after the cut-off, seen in the listing or answered by the
            node at delete time (412; a shard gone meanwhile counts here too).
        errors: deletes that failed, or why the node was not swept.
    """

    deleted: list[ListedShard] = field(default_factory=list)
    deleted_count: int = 0
    deleted_bytes: int = 0
    kept_recent: int = 0
    errors: list[str] = field(default_factory=list)

    def note_deleted(self, shard: ListedShard) -> None:
        """Count a deleted shard (and name it, below :data:`REPORT_LIMIT`)."""
        self.deleted_count += 1
        self.deleted_bytes += shard.size
        if len(self.deleted) < REPORT_LIMIT:
            self.deleted.append(shard)


@dataclass
class GcReport:
    """What one collection did (or, with ``dry_run``, would do).

    Attributes:
        started: ``t0``, unix seconds.
        cutoff: ``t0 - grace``: unreferenced shards older than this go.
        closure: whether the records' links were read (a link reader was
            given): records that stay then keep every record they need.
        expired: expired records, each with its reason: the first
            :data:`REPORT_LIMIT`.
        expired_total: expired records, all of them.
        retained: records the age or idle rule would expire that stay, each with
            why (needed by a record that stays, pinned): the first
            :data:`REPORT_LIMIT` by key.
        retained_total: such records, all of them.
        pins: the pins found (with ``closure``).
        records_kept: live records that stay (retained ones included).
        kept_records: expired copies that stay (replaced meanwhile, node error).
        live_stripes: stripes referenced by the records that stay.
        swept: whether shards were considered for deletion at all.
        nodes: node id -> its sweep.
        skipped: why some of the work was not done (incomplete record scan, ...).
    """

    started: float
    dry_run: bool
    grace: float
    closure: bool = False
    expired: list[ExpiredRecord] = field(default_factory=list)
    expired_total: int = 0
    retained: list[RetainedRecord] = field(default_factory=list)
    retained_total: int = 0
    pins: list[PinSummary] = field(default_factory=list)
    records_kept: int = 0
    kept_records: list[KeptRecord] = field(default_factory=list)
    live_stripes: int = 0
    swept: bool = False
    nodes: dict[str, NodeSweep] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def cutoff(self) -> float:
        """``started - grace``."""
        return self.started - self.grace

    def note_expired(self, record: ExpiredRecord) -> None:
        """Count an expired record (and name it, below :data:`REPORT_LIMIT`)."""
        self.expired_total += 1
        if len(self.expired) < REPORT_LIMIT:
            self.expired.append(record)

    @property
    def deleted_shards(self) -> int:
        """Shards deleted over all nodes."""
        return sum(n.deleted_count for n in self.nodes.values())

    @property
    def deleted_bytes(self) -> int:
        """Bytes deleted over all nodes."""
        return sum(n.deleted_bytes for n in self.nodes.values())

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (shard counts and bytes, not ids).

        ``expired_records``: what goes and why (``reason``: ``age: ...`` or
        ``idle: ...``); ``retained_records``: what the rule would expire but
        stays, and why (``kept_because``); each names at most
        :data:`REPORT_LIMIT`, and ``expired_total`` and ``retained_total`` count
        all; each node's ``deleted_shards`` are unreferenced shards last written
        before ``cutoff``.
        """
        return {
            "dry_run": self.dry_run,
            "started": round(self.started, 3),
            "grace_seconds": self.grace,
            "cutoff": round(self.cutoff, 3),
            "closure_checked": self.closure,
            "expired_records": [{"key": e.key, "label": e.label, "reason": e.reason,
                                 "nodes": list(e.nodes)}
                                for e in self.expired],
            "expired_total": self.expired_total,
            "retained_records": [{"key": r.key, "label": r.label, "expired_by": r.expiry,
                                  "kept_because": r.why}
                                 for r in self.retained],
            "retained_total": self.retained_total,
            "pins": [{"name": p.name, "key": p.key, "paths": p.paths,
                      "closure_records": p.closure} for p in self.pins],
            "records_kept": self.records_kept,
            "kept_records": [{"key": k.key, "node": k.node, "reason": k.reason}
                             for k in self.kept_records],
            "live_stripes": self.live_stripes,
            "shards_swept": self.swept,
            "nodes": {node_id: {"deleted_shards": s.deleted_count,
                                "deleted_bytes": s.deleted_bytes,
                                "kept_recent": s.kept_recent,
                                "errors": s.errors}
                      for node_id, s in sorted(self.nodes.items())},
            "deleted_shards": self.deleted_shards,
            "deleted_bytes": self.deleted_bytes,
            "skipped": self.skipped,
        }

"""What a garbage collection did (or, dry run, would do): :class:`GcReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage_network.wire.listing import ListedShard


@dataclass(frozen=True)
class ExpiredRecord:
    """A record that expired: key, why, and the nodes whose copy a tombstone replaced
    (would replace, dry run)."""

    key: str
    reason: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class KeptRecord:
    """An expired record copy that stays: on which node and why (a newer version was
    written since, the tombstone reached too few nodes, a node failed)."""

    key: str
    node: str
    reason: str


@dataclass
class NodeSweep:
    """The shard sweep of one node.

    Attributes:
        deleted: shards deleted (dry run: that would be), with sizes.
        kept_recent: unreferenced shards kept because they were written or
            touched after the cut-off, seen in the listing or answered by the
            node at delete time (412; a shard gone meanwhile counts here too).
        errors: deletes that failed, or why the node was not swept.
    """

    deleted: list[ListedShard] = field(default_factory=list)
    kept_recent: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def deleted_bytes(self) -> int:
        """Bytes of the deleted shards."""
        return sum(s.size for s in self.deleted)


@dataclass
class GcReport:
    """What one collection did (or, with ``dry_run``, would do).

    Attributes:
        started: ``t0``, unix seconds.
        cutoff: ``t0 - grace``: unreferenced shards older than this go.
        expired: expired records, each with its reason.
        kept_records: expired copies that stay (replaced meanwhile, node error).
        live_stripes: stripes referenced by the records that stay.
        swept: whether shards were considered for deletion at all.
        nodes: node id -> its sweep.
        skipped: why some of the work was not done (incomplete inventory, ...).
    """

    started: float
    dry_run: bool
    grace: float
    expired: list[ExpiredRecord] = field(default_factory=list)
    kept_records: list[KeptRecord] = field(default_factory=list)
    live_stripes: int = 0
    swept: bool = False
    nodes: dict[str, NodeSweep] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def cutoff(self) -> float:
        """``started - grace``."""
        return self.started - self.grace

    @property
    def deleted_shards(self) -> int:
        """Shards deleted over all nodes."""
        return sum(len(n.deleted) for n in self.nodes.values())

    @property
    def deleted_bytes(self) -> int:
        """Bytes deleted over all nodes."""
        return sum(n.deleted_bytes for n in self.nodes.values())

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (shard counts and bytes, not ids)."""
        return {
            "dry_run": self.dry_run,
            "started": round(self.started, 3),
            "grace_seconds": self.grace,
            "expired_records": [{"key": e.key, "reason": e.reason, "nodes": list(e.nodes)}
                                for e in self.expired],
            "kept_records": [{"key": k.key, "node": k.node, "reason": k.reason}
                             for k in self.kept_records],
            "live_stripes": self.live_stripes,
            "shards_swept": self.swept,
            "nodes": {node_id: {"deleted_shards": len(s.deleted),
                                "deleted_bytes": s.deleted_bytes,
                                "kept_recent": s.kept_recent,
                                "errors": s.errors}
                      for node_id, s in sorted(self.nodes.items())},
            "deleted_shards": self.deleted_shards,
            "deleted_bytes": self.deleted_bytes,
            "skipped": self.skipped,
        }

"""What a repair run found and did: :class:`RepairReport`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class RepairReport:
    """What a repair run found and did (bytes are shard-body bytes, seconds wall time).

    Attributes:
        shards_written: shards stored (rebuilt), ``shards_healed`` of them in
            place of a corrupt or missing copy found by an audit or a read-back.
        corrupt_found: (node, shard) pairs counted missing because they did not
            verify when read back, or were claimed and not served.
        shards_verified: shards read back that verified.
        bad_deleted: corrupt copies deleted (not overwritten by a rebuilt one).
    """

    stripes: int = 0
    healthy: int = 0
    degraded: int = 0
    lost: list[str] = field(default_factory=list)
    shards_written: int = 0
    shards_healed: int = 0
    bytes_written: int = 0
    corrupt_found: int = 0
    shards_verified: int = 0
    bad_deleted: int = 0
    unplaceable: int = 0
    records: int = 0
    tombstones: int = 0
    records_copied: int = 0
    failures: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    planned: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """True when nothing is left to do: no failure, no lost or unplaceable shard."""
        return not (self.failures or self.lost or self.unplaceable)

    def to_json(self) -> dict[str, object]:
        """The report as JSON-ready data."""
        return {
            "stripes": self.stripes, "healthy": self.healthy, "degraded": self.degraded,
            "lost": self.lost, "shards_written": self.shards_written,
            "shards_healed": self.shards_healed, "bytes_written": self.bytes_written,
            "corrupt_found": self.corrupt_found, "shards_verified": self.shards_verified,
            "bad_deleted": self.bad_deleted, "unplaceable": self.unplaceable,
            "records": self.records, "tombstones": self.tombstones,
            "records_copied": self.records_copied, "failures": self.failures,
            "unreachable": self.unreachable, "planned": dict(self.planned),
            "seconds": round(self.seconds, 3),
        }

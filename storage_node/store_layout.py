"""The data directory's layout, and what the shard and record halves of a store share.

Layout under the data directory::

    shards/<first 2 hex of the root>/<root hex>.<index>
    records/<record key>
    tmp/<random>.part          bodies being received; never read
    lock                       flock'd while a node runs on this directory
    usage.sqlite               bytes charged to each publisher (storage_node.usage)

Names are validated against :data:`storage_network.wire.stripe.SHARD_ID_RE` and
:data:`RECORD_KEY_RE` before any path is built, so no request can name a
file outside the data directory.
"""

from __future__ import annotations

import enum
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from storage_network.wire.record import RECORD_KEY_RE
from storage_network.wire.stripe import SHARD_ID_RE

from .disk import TempFile
from .usage import UsageLedger

FANOUT = [f"{i:02x}" for i in range(256)]


class Deletion(enum.Enum):
    """What a conditional delete did."""

    DELETED = "deleted"
    ABSENT = "absent"
    KEPT = "kept"  # the precondition failed: shard touched since, or record replaced


@dataclass
class StoreStats:
    """Counters kept in memory: shard count, total shard bytes, record count, and shards
    healed (replaced because their stored bytes no longer matched their id) since start."""

    shards: int = 0
    shard_bytes: int = 0
    records: int = 0
    healed: int = 0


class StoreLayout:
    """The paths, locks and in-memory counters of one data directory.

    :class:`~storage_node.shard_store.ShardStore` and
    :class:`~storage_node.record_store.RecordStore` build on it;
    :class:`~storage_node.store.Store` is both.  :attr:`usage`, the ledger of what
    each publisher is charged, is opened by :meth:`~storage_node.store.Store.open`.
    """

    usage: UsageLedger

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shards_dir = root / "shards"
        self.records_dir = root / "records"
        self.tmp_dir = root / "tmp"
        self.stats = StoreStats()
        self._lock_fd: int | None = None
        # Held (on worker threads) around every check-then-act on shard and
        # record files: placing, touching and conditional deletes.
        self._shard_lock = threading.Lock()
        self._record_lock = threading.Lock()

    def shard_path(self, shard_id: str) -> Path:
        """Where shard ``shard_id`` lives (whether or not it exists).

        Raises:
            ValueError: ``shard_id`` does not match ``SHARD_ID_RE`` (callers
                validate first; this is the last line of defence for paths).
        """
        if not SHARD_ID_RE.fullmatch(shard_id):
            raise ValueError(f"not a shard id: {shard_id[:80]!r}")
        return self.shards_dir / shard_id[:2] / shard_id

    def record_path(self, key: str) -> Path:
        """Where record ``key`` lives (whether or not it exists).

        Raises:
            ValueError: ``key`` does not match :data:`RECORD_KEY_RE`.
        """
        if not RECORD_KEY_RE.fullmatch(key):
            raise ValueError(f"not a record key: {key[:80]!r}")
        return self.records_dir / key

    def new_temp(self) -> TempFile:
        """A fresh, uniquely named :class:`TempFile` under ``tmp/``."""
        return TempFile(self.tmp_dir / f"{secrets.token_hex(12)}.part")

    def free_bytes(self) -> int:
        """Bytes free on the data directory's filesystem (for unprivileged users)."""
        return shutil.disk_usage(self.root).free

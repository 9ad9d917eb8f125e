"""The shard half of a node's store: immutable shards, written atomically, healed when rotten.

A write of a shard already held checks the stored bytes against the id
(:func:`storage_network.wire.stripe.verify_shard`): bytes that still match are
kept, bytes that no longer do (disk rot, tampering) are replaced by the
incoming ones, which the caller has checked (this is how repair heals
corruption; counted in :attr:`~storage_node.store_layout.StoreStats.healed`).

A shard's mtime is when it was last written or touched: a PUT of a shard
already held and a signed ``has`` with ``touch`` set it to now, so a
collector never deletes a shard a push is about to reference;
:meth:`ShardStore.delete_shard` deletes only shards older than the
collector's cut-off, and the check and the unlink happen under the lock
that touches and PUTs take, so neither can slip in between.

A shard placed by a write holding a :class:`~storage_node.usage.Reservation`
is charged to that reservation's publisher as it is placed, and a deleted
shard refunds its payer (:mod:`storage_node.usage`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from storage_network.errors import ShardProofError
from storage_network.wire.listing import ListedShard
from storage_network.wire.stripe import SHARD_ID_RE, parse_shard_id, verify_shard

from .disk import TempFile, fsync_dir, place, scan_dir, size_or_none, sync_filesystem
from .store_layout import FANOUT, Deletion, StoreLayout
from .usage import SHARD, Reservation

log = logging.getLogger("nixshard.node")


class ShardWrite(enum.Enum):
    """What a shard write did."""

    NEW = "new"          # the shard was not held
    HELD = "held"        # held and still matching its id: kept, mtime set to now
    HEALED = "healed"    # held but no longer matching its id: replaced


def _stored_shard_matches(final: Path, shard_id: str) -> bool:
    """True if the file ``final`` still holds a shard matching ``shard_id`` (blocking).

    False when it does not verify or vanished meanwhile.
    """
    root, index = parse_shard_id(shard_id)
    try:
        data = final.read_bytes()
    except FileNotFoundError:
        return False
    try:
        verify_shard(root, index, memoryview(data))
    except ShardProofError:
        return False
    return True


class ShardStore(StoreLayout):
    """Shards under ``shards/``: commit (one or a batch), read, touch, delete, list."""

    def _count_shard_write(self, shard_id: str, outcome: ShardWrite, size: int,
                           old_size: int) -> None:
        if outcome is ShardWrite.NEW:
            self.stats.shards += 1
            self.stats.shard_bytes += size
        elif outcome is ShardWrite.HEALED:
            self.stats.healed += 1
            self.stats.shard_bytes += size - old_size
            log.warning("shard %s no longer matched its id (%d bytes stored); replaced by "
                        "the %d bytes just written", shard_id, old_size, size)

    async def commit_shard(self, temp: TempFile, shard_id: str,
                           payer: Reservation | None = None) -> ShardWrite:
        """Make ``temp`` (bytes already checked against ``shard_id``) shard ``shard_id``:
        fsync, link into place, fsync the directory.

        A stored shard that still matches its id is kept as it is (shards are
        immutable), ``temp`` is dropped and the shard's mtime set to now (a
        push reusing it keeps it from garbage collection).  A stored shard
        that no longer matches is replaced by ``temp`` atomically (logged as
        a warning, counted in :attr:`StoreStats.healed`).

        Raises:
            OSError: the disk refused (full, read-only, ...).
        """
        final = self.shard_path(shard_id)
        outcome, old_size = await asyncio.to_thread(self._commit_shard_sync, temp, shard_id,
                                                    final, payer)
        self._count_shard_write(shard_id, outcome, temp.size, old_size)
        return outcome

    def _touch_if_present(self, final: Path) -> bool:
        """Set ``final``'s mtime to now if it exists (caller holds the shard lock)."""
        try:
            os.utime(final)
        except FileNotFoundError:
            return False
        return True

    def _heal_sync(self, temp: TempFile, final: Path) -> tuple[ShardWrite, int]:
        """Put ``temp`` in place of a stored shard that no longer matched its id."""
        with self._shard_lock:
            old_size = size_or_none(final)
            os.replace(temp.path, final)
            temp.committed = True
        return (ShardWrite.NEW, 0) if old_size is None else (ShardWrite.HEALED, old_size)

    def _charge(self, placed: list[tuple[str, int]], payer: Reservation | None) -> None:
        """Charge ``payer``'s publisher for the shards just ``placed`` (id, bytes)."""
        if payer is not None and placed:
            self.usage.charge(SHARD, placed, payer.publisher, payer)

    def _commit_shard_sync(self, temp: TempFile, shard_id: str, final: Path,
                           payer: Reservation | None) -> tuple[ShardWrite, int]:
        with self._shard_lock:
            present = self._touch_if_present(final)
        if present:
            if _stored_shard_matches(final, shard_id):  # common on re-uploads: no fsync
                temp.discard()
                return ShardWrite.HELD, 0
            temp.sync_close()
            outcome = self._heal_sync(temp, final)
            fsync_dir(final.parent)
            return outcome
        temp.sync_close()
        with self._shard_lock:
            created = place(temp.path, final, replace=False)
            temp.committed = True
            if created:
                self._charge([(shard_id, temp.size)], payer)
            else:
                self._touch_if_present(final)
        if created:
            fsync_dir(final.parent)
        return (ShardWrite.NEW if created else ShardWrite.HELD), 0

    async def commit_shards(self, shards: Sequence[tuple[str, bytes | memoryview]],
                            payer: Reservation | None = None) -> list[ShardWrite]:
        """Store a batch of checked shards: all written, then made durable together.

        Every new shard is written to its own temp file, one
        :func:`sync_filesystem` makes them durable, each is linked into place
        (a reader never sees a partial shard), and a second one makes the
        links durable before this returns.  A shard already stored is kept
        and its mtime set to now, or replaced when its stored bytes no longer
        match its id, as :meth:`commit_shard` does.  The new shards are charged
        to ``payer``'s publisher, releasing ``payer`` (None: charged to nobody).

        Returns:
            Per shard, in order, what was done.

        Raises:
            OSError: the disk refused (full, read-only, ...); temp files are
                removed and shards linked before the failure stay (each is
                complete and matches its id).
        """
        done = await asyncio.to_thread(self._commit_shards_sync, shards, payer)
        for (sid, body), (outcome, old_size) in zip(shards, done, strict=True):
            self._count_shard_write(sid, outcome, len(body), old_size)
        return [outcome for outcome, _ in done]

    def _commit_shards_sync(self, shards: Sequence[tuple[str, bytes | memoryview]],
                            payer: Reservation | None) -> list[tuple[ShardWrite, int]]:
        done = [(ShardWrite.HELD, 0)] * len(shards)
        temps: list[tuple[int, TempFile, Path, bool]] = []  # (number, temp, final, heal)
        placed: list[tuple[str, int]] = []  # new shards, charged even if a later one fails
        try:
            for number, (sid, body) in enumerate(shards):
                final = self.shard_path(sid)
                with self._shard_lock:
                    present = self._touch_if_present(final)
                if present and _stored_shard_matches(final, sid):
                    continue
                temp = self.new_temp()
                temps.append((number, temp, final, present))
                temp.write(body)
                temp.close()
            if not temps:
                return done
            sync_filesystem(self.tmp_dir)
            for number, temp, final, heal in temps:
                if heal:
                    done[number] = self._heal_sync(temp, final)
                    continue
                with self._shard_lock:
                    created = place(temp.path, final, replace=False)
                    temp.committed = True
                    if created:
                        placed.append((shards[number][0], temp.size))
                    else:
                        self._touch_if_present(final)
                done[number] = (ShardWrite.NEW if created else ShardWrite.HELD, 0)
            sync_filesystem(self.tmp_dir)
        finally:
            for _, temp, _, _ in temps:
                temp.discard()
            self._charge(placed, payer)
        return done

    def read_shards(self, shard_ids: Iterable[str]) -> list[bytes | None]:
        """The stored bodies of ``shard_ids`` (validated), None where not stored.

        Blocking: call it from a thread.
        """
        bodies: list[bytes | None] = []
        for sid in shard_ids:
            try:
                with open(self.shard_path(sid), "rb") as f:
                    bodies.append(f.read())
            except FileNotFoundError:
                bodies.append(None)
        return bodies

    async def touch_shards(self, shard_ids: Iterable[str]) -> list[str]:
        """Set the mtime of the stored ones of ``shard_ids`` (validated) to now.

        Returns:
            The stored ones, in order.
        """
        paths = [(i, self.shard_path(i)) for i in shard_ids]

        def touch() -> list[str]:
            with self._shard_lock:
                return [i for i, path in paths if self._touch_if_present(path)]

        return await asyncio.to_thread(touch)

    async def delete_shard(self, shard_id: str, before: float) -> Deletion:
        """Delete shard ``shard_id`` if its mtime is earlier than ``before`` (unix seconds).

        Returns:
            DELETED; ABSENT; or KEPT when it was written or touched at or after ``before``.

        Raises:
            OSError: the disk refused.
        """
        final = self.shard_path(shard_id)
        outcome, size = await asyncio.to_thread(self._delete_shard_sync, final, before)
        if outcome is Deletion.DELETED:
            self.stats.shards -= 1
            self.stats.shard_bytes -= size
        return outcome

    def _delete_shard_sync(self, final: Path, before: float) -> tuple[Deletion, int]:
        with self._shard_lock:
            try:
                st = os.stat(final, follow_symlinks=False)
            except FileNotFoundError:
                return Deletion.ABSENT, 0
            if st.st_mtime >= before:
                return Deletion.KEPT, 0
            os.unlink(final)
            self.usage.refund(SHARD, final.name)
        fsync_dir(final.parent)
        return Deletion.DELETED, st.st_size

    async def present_shards(self, shard_ids: Iterable[str]) -> list[str]:
        """The subset of ``shard_ids`` (already validated) that is stored, in order."""
        ids = list(shard_ids)
        return await asyncio.to_thread(
            lambda: [i for i in ids if self.shard_path(i).is_file()])

    def list_shard_dir(self, fanout: int, after: str = "", limit: int | None = None
                       ) -> list[ListedShard]:
        """The shards under fan-out directory ``fanout`` (0-255) whose ids sort after
        ``after``, sorted by id, at most ``limit`` (None: all).

        Blocking (scandir + stat): call it from a thread.
        """
        return [ListedShard(name, st.st_size, st.st_mtime) for name, st
                in scan_dir(self.shards_dir / FANOUT[fanout], SHARD_ID_RE, after, limit)]

"""Record lookup: the newest verified version of a key, from a quorum of its window.

The rule (docs/consistency.md, "Records"): the *window* of a key is the
first ``R + m`` nodes of its record ranking (R = the network file's
``record_replicas``, at least m + 1; all nodes when there are fewer).
:func:`fetch_record` asks R nodes of the window, nodes in good standing
first (:mod:`storage_network.nodes.health`), then ranking order; when R
answers are not in after ``hedge_after`` seconds, it asks the rest of the
window, and it asks the next node at once whenever one fails and the
others can no longer make R answers.  It is done when R nodes of the
window have *answered*: a valid version, none (404), or a version that
fails verification (counted as none, logged, not held against the node: it
may just be signed by a key this reader does not trust).  Requests still
running then are cancelled (a slow or trickling node never delays the
lookup past the R-th answer) and their nodes recorded as slow.

Any R answering nodes of the window share one node with any R nodes that
stored a version (R + R > R + m), so the newest committed version is among
the answers.  The newest valid version wins (largest signed ``created``,
ties by the envelope's SHA-256, :func:`storage_network.wire.record.newest`):

- a record: returned;
- a tombstone, no version at all, or a record whose lease ended (its signed
  ``expires`` is past, :meth:`~storage_network.wire.record.Record.expired`):
  :class:`NotFoundError`;
- fewer than R nodes of the window answered: see below.

More than m nodes of the window down is past what the rule covers; the
reader then goes on down the ranking past the window until R nodes in all
have answered (repair copies records past dead nodes the same way).  What
it finds there is served (the newest valid version among the answers; a
newest tombstone is absent), but *no version at all* is then
:class:`RecordUnavailableError`, never a 404: the version may sit on the
window nodes that did not answer, and Nix remembers a 404 for an hour.
Fewer than R answers in all: :class:`RecordUnavailableError`.

A reader never goes back: the client remembers the newest version it has
seen of each key (``net.records``, :mod:`storage_network.read.record_memory`;
lookups trusting the network file's publisher keys, the default).
When the quorum's newest is older than that, the remembered Record is
returned while it is still held, else :class:`RecordUnavailableError`.

Read repair: a client with a publisher key (``net.repairer``) copies the
newest version's signed bytes, as they are, to those of the first R
answering nodes of the window (ranking order) that lack it or hold an
older one.  The copies run in the background (``net.background``, a
bounded number at once; a lookup over the bound repairs nothing) and are
logged; they never delay or fail the lookup.  A tombstone that nodes refuse
by the network file's roles (neither its sealer nor the repairer is a
maintainer) is not copied, and a node refusing a copy (403, 409) is not
held to blame.

A private cache's client (one with a keyring) looks a plain key up under
each cache secret's keyed key and opens what it finds
(:func:`fetch_sealed_record`); everything above applies to each keyed key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from storage_network.client import NetworkClient, cancel_and_wait
from storage_network.coding.sealing import Keyring
from storage_network.config import NodeInfo
from storage_network.errors import (
    AuthError,
    NodeError,
    NodeStatusError,
    NotFoundError,
    RecordError,
    RecordUnavailableError,
)
from storage_network.nodes.health import CLIENT_RETRIES, Standing, blamed_on_client
from storage_network.nodes.placement import record_nodes, window_size
from storage_network.wire.manifest import ENTRY_BYTES
from storage_network.wire.record import Record, newest, open_record
from storage_network.wire.sealed_metadata import open_sealed_record
from storage_network.wire.write_auth import PublisherKey, check_may_store_tombstone

log = logging.getLogger("nixshard.network")

OPEN_INLINE_BYTES = 64 * 1024
"""Records up to this size are verified on the event loop; larger ones on the pool."""
REPAIR_GROUP = "record read repair"


@dataclass(frozen=True)
class _Answer:
    """What one node of the window said: its valid version (None: none, or an
    invalid one) and that version's envelope bytes."""

    node: NodeInfo
    version: Record | None = None
    envelope: bytes | None = None


async def _ask(net: NetworkClient, node: NodeInfo, key: str,
               trusted: dict[str, PublisherKey]) -> _Answer | NodeError:
    """The node's answer, or the NodeError of a node that did not answer (reported;
    a timeout blamed on the client is asked again, see ``CLIENT_RETRIES``)."""
    for attempt in range(CLIENT_RETRIES + 1):
        try:
            data = await net.nodes[node.id].get_record(key)
            break
        except NodeError as exc:
            log.info("record %s: %s", key, exc)
            net.health.node_error(node.id, exc)
            if not blamed_on_client(exc) or attempt == CLIENT_RETRIES:
                return exc
    if data is None:
        return _Answer(node)
    try:
        version = await net.compute(len(data), open_record, trusted, key, data,
                                    inline=OPEN_INLINE_BYTES)
    except RecordError as exc:
        log.warning("node %s served a bad record for %s: %s", node.id, key, exc)
        return _Answer(node)
    return _Answer(node, version, data)


class _Quorum:
    """The requests of one lookup (module docstring): ``want`` answers from ``window``."""

    def __init__(self, net: NetworkClient, key: str, trusted: dict[str, PublisherKey],
                 window: list[NodeInfo], want: int, beyond: list[NodeInfo]) -> None:
        self.net, self.key, self.trusted, self.want = net, key, trusted, want
        self.queue = self._ordered(window)
        self.beyond = beyond
        self.window_ids = {node.id for node in window}
        self.running: dict[asyncio.Task[_Answer | NodeError], tuple[NodeInfo, float]] = {}
        self.answers: list[_Answer] = []
        self.failures: list[str] = []
        self.asked = 0

    def _ordered(self, nodes: list[NodeInfo]) -> deque[NodeInfo]:
        """``nodes`` in good standing first, then in the given (ranking) order."""
        position = {node.id: pos for pos, node in enumerate(nodes)}
        return deque(sorted(nodes, key=lambda node: (
            self.net.health.standing(node.id) is not Standing.GOOD, position[node.id])))

    @property
    def window_answers(self) -> int:
        """Answers from nodes of the window."""
        return sum(a.node.id in self.window_ids for a in self.answers)

    def _launch(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            if not self.queue:
                return
            node = self.queue.popleft()
            self.asked += 1
            task = asyncio.create_task(_ask(self.net, node, self.key, self.trusted))
            self.running[task] = (node, loop.time())

    async def run(self) -> None:
        """Ask until ``want`` nodes answered or every node of the window was asked,
        then, short of ``want``, the nodes past the window (module docstring)."""
        loop = asyncio.get_running_loop()
        hedge_at = loop.time() + self.net.hedge_after
        try:
            while len(self.answers) < self.want:
                self._launch(self.want - len(self.answers) - len(self.running))
                if not self.running and not self.queue and self.beyond:
                    log.warning("record %s: only %d of the %d nodes of its window answered; "
                                "asking past the window", self.key, self.window_answers,
                                len(self.window_ids))
                    self.queue, self.beyond = self._ordered(self.beyond), []
                    continue
                if not self.running:
                    return
                timeout = max(0.0, hedge_at - loop.time()) if self.queue else None
                done, _ = await asyncio.wait(set(self.running), timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:  # hedge: ask the rest of the window
                    self._launch(len(self.queue))
                    continue
                for task in done:
                    self.running.pop(task)
                    answer = task.result()
                    if isinstance(answer, NodeError):
                        self.failures.append(str(answer))
                    else:
                        self.answers.append(answer)
        finally:
            await self._stop()

    async def _stop(self) -> None:
        """Cancel what still runs; a request running ``hedge_after`` or more was
        hedged past: its node was slow (unless the client was busy meanwhile)."""
        now = asyncio.get_running_loop().time()
        hedge_after = self.net.hedge_after
        for node, started in self.running.values():
            if now - started >= hedge_after and not self.net.was_busy(started, hedge_after):
                self.net.health.slow(node.id, f"record {self.key}: hedged past after "
                                     f"{now - started:.1f} s")
        await cancel_and_wait(set(self.running))
        self.running.clear()


async def fetch_record(net: NetworkClient, key: str,
                       trusted: dict[str, PublisherKey] | None = None) -> Record:
    """The newest verified record under ``key`` (:func:`fetch_stored_record`); with
    the client's keyring, ``key`` is plain and the record is opened
    (:func:`fetch_sealed_record`).

    Raises:
        NotFoundError, RecordUnavailableError: as :func:`fetch_stored_record`.
        SealError: a private cache's record does not open.
    """
    if net.keyring is None:
        return await fetch_stored_record(net, key, trusted)
    return await fetch_sealed_record(net, net.keyring, key, trusted)


async def fetch_sealed_record(net: NetworkClient, keyring: Keyring, key: str,
                              trusted: dict[str, PublisherKey] | None = None) -> Record:
    """The record of plain key ``key`` in a private cache, opened.

    Looks ``key`` up under each secret's keyed key (:meth:`CacheSecret.record_key`),
    newest secret first, and opens the first record found
    (:func:`~storage_network.wire.sealed_metadata.open_sealed_record`; on the
    pool past :data:`OPEN_INLINE_BYTES`).

    Returns:
        The record with ``key`` the plain key, its plain metadata, and a
        manifest whose refs carry their chunk keys and sizes.

    Raises:
        NotFoundError: absent (or deleted) under every secret's keyed key.
        RecordUnavailableError: as :func:`fetch_stored_record`, for a secret
            tried before the record was found.
        SealError: the record found is not sealed or does not open.
    """
    misses = []
    for secret in keyring:
        keyed = secret.record_key(key)
        try:
            record = await fetch_stored_record(net, keyed, trusted)
        except NotFoundError as exc:
            misses.append(f"{secret.name}: {exc}")
            continue
        return await net.compute(_opening_bytes(record), open_sealed_record, keyring, record,
                                 key, inline=OPEN_INLINE_BYTES)
    raise NotFoundError(f"record {key}: not under the keyed key of any cache secret ("
                        + "; ".join(misses) + ")")


def _opening_bytes(record: Record) -> int:
    """About the bytes opening sealed ``record`` works over: its metadata and manifest
    (its envelope's size); opened on the event loop up to :data:`OPEN_INLINE_BYTES`."""
    return len(record.metadata) + ENTRY_BYTES * len(record.manifest.chunks)


async def fetch_stored_record(net: NetworkClient, key: str,
                              trusted: dict[str, PublisherKey] | None = None) -> Record:
    """The newest verified record stored under ``key``, by the rule of the module docstring.

    Args:
        trusted: publisher keys whose records are accepted (default: the
            network file's publishers).  The client's memory of versions seen
            (and read repair) serves lookups with the default keys only.

    Raises:
        NotFoundError: the newest version among R answers of the window is
            a tombstone or a record whose lease ended, or there is none.
        RecordUnavailableError: fewer than R nodes of the window answered, or
            the answers hold only versions older than one this client has
            seen and no longer holds.
    """
    keys = net.network.publishers if trusted is None else trusted
    ranked = record_nodes(net.network.nodes, key)
    window = ranked[:window_size(net.network)]
    want = min(net.network.record_replicas, len(window))
    quorum = _Quorum(net, key, keys, window, want, ranked[len(window):])
    await quorum.run()
    if len(quorum.answers) < want:
        raise RecordUnavailableError(
            f"record {key}: {len(quorum.answers)} of the {len(ranked)} nodes asked "
            f"answered, {want} needed; " + "; ".join(quorum.failures))
    found = newest(a.version for a in quorum.answers if a.version is not None)
    if found is None and quorum.window_answers < want:
        past = len(quorum.answers) - quorum.window_answers
        raise RecordUnavailableError(
            f"record {key}: {quorum.window_answers} of the {len(window)} nodes of its window "
            f"answered, {want} needed, and none of the {past} answering past it holds a "
            "version; " + "; ".join(quorum.failures))
    if trusted is not None:  # other keys than the ones remembered versions were checked with
        best = found
    else:
        best = _not_older(net, key, found)
        if best is found and found is not None:
            envelope = next(a.envelope for a in quorum.answers if a.version is found)
            assert envelope is not None
            net.records.saw(found, envelope)
            copy: tuple[Record, bytes] | None = (found, envelope)
        else:
            copy = net.records.record(key)
        if copy is not None and net.repairer is not None and _nodes_take(net, copy[0]):
            _read_repair(net, key, copy, window, quorum.answers, want)
    if best is None:
        absent = sum(a.version is None for a in quorum.answers)
        raise NotFoundError(f"record {key}: absent on {absent} of the {quorum.asked} "
                            f"nodes asked")
    if best.tombstone:
        raise NotFoundError(f"record {key}: deleted (tombstone created {best.created})")
    if best.expired(time.time()):
        raise NotFoundError(f"record {key}: its lease ended at {best.expires}")
    return best


def _not_older(net: NetworkClient, key: str, found: Record | None) -> Record | None:
    """``found``, unless this client has seen a newer version of ``key``: then that
    one (its Record as remembered).

    Raises:
        RecordUnavailableError: a newer version was seen but is no longer held.
    """
    seen = net.records.version(key)
    if seen is None or (found is not None and found.version >= seen):
        return found
    held = net.records.record(key)
    older = "no version" if found is None else f"a version created {found.created}"
    if held is None or held[0].version != seen:
        raise RecordUnavailableError(
            f"record {key}: the nodes answered {older}, older than the version created "
            f"{seen[0]} this client has seen (and no longer holds)")
    log.warning("record %s: the nodes answered %s, older than the version created %d this "
                "client has seen: serving that one", key, older, seen[0])
    return held[0]


def _nodes_take(net: NetworkClient, record: Record) -> bool:
    """Whether nodes take ``record`` from the repairer by the network file's roles:
    a tombstone needs a maintainer to have sealed or to send it
    (:func:`~storage_network.wire.write_auth.check_may_store_tombstone`); one they
    would refuse is not sent (logged)."""
    if not record.tombstone:
        return True
    assert net.repairer is not None
    try:
        check_may_store_tombstone(record.publisher, net.network.may_delete(net.repairer.name))
    except AuthError as exc:
        log.info("record %s: no read repair of its tombstone, nodes would refuse it: %s",
                 record.key, exc)
        return False
    return True


def _read_repair(net: NetworkClient, key: str, best: tuple[Record, bytes],
                 window: list[NodeInfo], answers: list[_Answer], want: int) -> None:
    """Copy ``best`` in the background to those of the first ``want`` answering nodes
    of ``window`` (ranking order) that lack it or hold an older version."""
    record, envelope = best
    position = {node.id: pos for pos, node in enumerate(window)}
    first = sorted(answers, key=lambda a: position[a.node.id])[:want]
    stale = [a.node for a in first
             if a.version is None or a.version.version < record.version]
    if not stale:
        return
    if net.background.spawn(_repair(net, key, envelope, stale), REPAIR_GROUP) is None:
        log.info("record %s: read repair of %d nodes skipped (%d repairs running)", key,
                 len(stale), net.background.running(REPAIR_GROUP))


async def _repair(net: NetworkClient, key: str, envelope: bytes,
                  nodes: list[NodeInfo]) -> None:
    """Write ``envelope`` under ``key`` to each of ``nodes``; log what each did."""
    publisher = net.repairer
    assert publisher is not None

    async def copy(node: NodeInfo) -> None:
        try:
            status = await net.nodes[node.id].put_record(key, envelope, publisher)
        except NodeStatusError as exc:
            if exc.status not in (403, 409):  # a version it holds, or a key role it
                net.health.node_error(node.id, exc)  # sees otherwise than our network file
            log.info("record %s: read repair on node %s refused: %s", key, node.id, exc)
            return
        except NodeError as exc:
            net.health.node_error(node.id, exc)
            log.info("record %s: read repair on node %s failed: %s", key, node.id, exc)
            return
        log.info("record %s: read repair copied the newest version to node %s (%d)",
                 key, node.id, status)

    await asyncio.gather(*(copy(node) for node in nodes))

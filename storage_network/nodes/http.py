"""HTTP client for one storage node (the node API of :mod:`storage_node`).

Node API used here (reads open, writes signed and bound to the node, see
:mod:`storage_network.wire.write_auth`)::

    PUT  /shards/<id>     201 new, 200 already held
    GET  /shards/<id>     200 body, 404 absent
    POST /shards/batch-get   {"ids": [...]} -> framed bodies   (see shard_batch)
    POST /shards/batch-put   framed shards, signed -> {"created": [...], "held": [...]}
    POST /shards/has      {"ids": [...], "touch": bool} -> {"present": [...]}
                          (touch: signed; sets the mtime of the present ones)
    DELETE /shards/<id>?before=T   signed; 204 deleted, 404 absent,
                          412 the shard was written or touched at/after T
    GET  /shards          "<id> <size> <mtime>" lines
    PUT  /records/<key>   201 new, 200 replaced or already held; 409 the node
                          holds a newer version or another content (see record)
    GET  /records/<key>   200 body, 404 absent
    DELETE /records/<key>?sha256=HEX  signed; 204 deleted, 404 absent,
                          412 the stored record is not the one named
    GET  /records         "<key> <size> <mtime> <atime>" lines
    POST /proofs          {"nonce": hex, "ids": [...]} -> binary answers
    GET  /healthz         JSON

Every answer is hostile input.  Each read is capped by what the protocol
allows for that answer (a shard by its stripe's shard size, a ``has``
answer by the ids asked, a record by :data:`~storage_network.wire.record.MAX_RECORD_BYTES`,
and so on); JSON is parsed defensively (deep nesting, wrong types).  Past
4 MiB an answer takes room from the client's :class:`AnswerBudget` (64 MiB
shared by every node), so endless answers from a few hostile nodes add
at most that much to the client's memory.

Timeouts measure the node, not the client (see :class:`Deadlines`): a
request first takes one of the node's ``slots`` (the time it waits there
is the client's own queue, observed in ``nixshard_node_queue_seconds``),
and its deadlines start only then.  When a deadline passes while the
client's event loop was itself stalled (:class:`LoopLag`), the timeout is
blamed on the client (:attr:`NodeTimeoutError.blame` ``"client"``) and
must not count against the node.

Every failure other than "absent" raises a :class:`~storage_network.errors.NodeError`
naming the node: :class:`~storage_network.errors.NodeTimeoutError`,
:class:`~storage_network.errors.NodeStatusError` (an error status),
:class:`~storage_network.errors.NodeAnswerError` (malformed or oversized
answer), or the base class (connection refused or reset).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from storage_network import metrics
from storage_network.config import NodeInfo
from storage_network.errors import (
    NodeAnswerError,
    NodeError,
    NodeStatusError,
    NodeTimeoutError,
    ShardBatchError,
)
from storage_network.wire.proofs import max_answer_bytes
from storage_network.wire.record import MAX_RECORD_BYTES
from storage_network.wire.shard_batch import MAX_BATCH_IDS, encode_put_batch, parse_get_answer
from storage_network.wire.write_auth import Publisher, sign_write

HAS_BATCH = 5000
PEEK_HEADER = "X-Nixshard-Peek"
"""A record read carrying ``X-Nixshard-Peek: 1`` does not move the record's last-read time."""

SMALL_ANSWER_BYTES = 2 * 1024 * 1024
"""Cap of answers that are short by protocol (write acknowledgements, ``/healthz``)."""
RECORD_FREE_BYTES = 256 * 1024
"""Bytes of a record answer held without reserving from the :class:`AnswerBudget`: a
record this size lists some 8000 chunks (a NAR of about 2 GB); larger ones reserve.
Records are the answers with the widest cap (:data:`MAX_RECORD_BYTES`), asked of a whole
window at once on every narinfo miss: without this, hostile nodes streaming endless
records would each hold the budget's full free allowance per request slot."""
MAX_LISTING_LINE = 256
MAX_LISTING_ENTRIES = 20_000_000
"""Most lines a listing may have: 20 million shards (about 1.3 TB of 64 KiB shards).
A node listing more is answering nonsense (its listing is refused)."""
READ_PIECE = 1 << 16


@dataclass(frozen=True)
class Deadlines:
    """How long one node request may take, in seconds, counted from the moment it
    holds one of the node's slots (so never while it waits inside the client).

    Attributes:
        connect: to open a TCP connection.
        first_byte: from sending the request to the first byte of the answer.
        stall: longest pause between two pieces of the answer.
        total: the whole exchange: an answer that trickles in slower than
            this allows is abandoned, however steady.
    """

    connect: float = 5.0
    first_byte: float = 10.0
    stall: float = 10.0
    total: float = 30.0

    @classmethod
    def within(cls, seconds: float) -> Deadlines:
        """Deadlines for a client whose node timeout is ``seconds``: the whole
        exchange and each phase fit in it (connect at most 5 s)."""
        return cls(connect=min(5.0, seconds), first_byte=seconds, stall=seconds, total=seconds)


class LoopLag:
    """How late the event loop has been: a task wakes every ``tick`` seconds and
    records by how much it overslept (the loop was busy with other work).

    :meth:`worst_since` tells a timeout caused by the client's own load from one
    caused by the node.
    """

    def __init__(self, tick: float = 0.05, keep: int = 1200,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._tick = tick
        self._keep = keep
        self._clock = clock
        self._samples: list[tuple[float, float]] = []  # (when, lag seconds)
        self._task: asyncio.Task[None] | None = None
        self._due: float | None = None  # when the watcher should wake next

    def start(self) -> None:
        """Start watching (on the running loop); idempotent."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _watch(self) -> None:
        while True:
            before = self._clock()
            self._due = before + self._tick
            await asyncio.sleep(self._tick)
            now = self._clock()
            lag = now - before - self._tick
            if lag > self._tick:
                self._samples.append((now, lag))
                if len(self._samples) > self._keep:
                    del self._samples[:self._keep // 2]

    def worst_since(self, since: float) -> float:
        """The longest stall (seconds) of the loop after monotonic time ``since``: only
        the part of each stall that lies after ``since`` counts, and so does the
        stall the loop is in right now (the watcher overdue)."""
        now = self._clock()
        worst = 0.0 if self._due is None else max(0.0, now - max(since, self._due))
        for when, lag in reversed(self._samples):
            if when < since:
                break
            worst = max(worst, when - max(since, when - lag))
        return worst


class AnswerBudget:
    """Bytes of node answers being read into memory at once, over all nodes of a client.

    Every answer may hold ``free`` bytes on its own (a record answer at most
    :data:`RECORD_FREE_BYTES`); past that it must reserve each further MiB
    from a shared ``total``, so a few hostile
    nodes streaming endless answers (each up to its cap) cannot add more
    than ``total`` bytes to the client's memory, however many requests run.
    An answer waiting for room counts the wait against the client, not the
    node (:class:`~storage_network.errors.NodeTimeoutError` with blame
    ``"client"`` when its deadline passes meanwhile).

    Args:
        total: bytes shared by all answers past their free allowance.
        free: bytes every answer may hold without reserving.
    """

    STEP = 1 << 20

    def __init__(self, total: int = 64 << 20, free: int = 4 << 20) -> None:
        self.total, self.free = total, free
        self.used = 0
        self._changed = asyncio.Condition()

    async def reserve(self, nbytes: int) -> None:
        """Wait until ``nbytes`` fit under ``total``, then take them."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + nbytes <= self.total)
            self.used += nbytes

    async def release(self, nbytes: int) -> None:
        """Give back ``nbytes`` taken by :meth:`reserve`."""
        if nbytes:
            async with self._changed:
                self.used -= nbytes
                self._changed.notify_all()


@dataclass
class _Charge:
    """What one answer took from the :class:`AnswerBudget`, and whether it waits for more."""

    free: int
    reserved: int = 0
    waiting: bool = False


@dataclass(frozen=True)
class ListedShard:
    """A shard a node lists: id, size (bytes), mtime (unix seconds)."""

    id: str
    size: int
    mtime: float


@dataclass(frozen=True)
class ListedRecord:
    """A record a node lists: key, size (bytes), mtime and last read time (unix seconds)."""

    key: str
    size: int
    mtime: float
    atime: float


def parse_json_answer(node_id: str, what: str, data: bytes | bytearray) -> dict[str, Any]:
    """A node's JSON object answer.

    Raises:
        NodeAnswerError: not UTF-8 JSON, nested too deeply to parse, or not an object.
    """
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise NodeAnswerError(f"node {node_id}: {what}: answer is not JSON "
                              f"({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise NodeAnswerError(f"node {node_id}: {what}: answer is not a JSON object")
    return doc


def _id_list(node_id: str, what: str, doc: dict[str, Any], field: str,
             asked: set[str] | None = None) -> list[str]:
    """``doc[field]`` as a list of strings (each one of ``asked`` when given)."""
    items = doc.get(field)
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise NodeAnswerError(f"node {node_id}: {what}: {field!r} is not a list of ids")
    if asked is not None and not asked.issuperset(items):
        raise NodeAnswerError(f"node {node_id}: {what}: answer names ids that were not asked")
    return items


class NodeClient:
    """Talks to one node over a shared :class:`aiohttp.ClientSession`.

    Args:
        info: the node's id and base URL.
        session: a session owned by the caller (connection reuse); its
            connector must allow at least ``slots`` connections to the node.
        timeout: seconds; shorthand for ``Deadlines.within(timeout)``.
        deadlines: per-phase deadlines (overrides ``timeout``).
        slots: requests to this node at once; more wait in the client, their
            deadlines not yet running.
        lag: the client's event-loop watcher (None: every timeout is the node's).
        budget: the memory budget of answers shared by the client's nodes
            (None: a budget of this node's own).
    """

    def __init__(self, info: NodeInfo, session: aiohttp.ClientSession, timeout: float = 30.0,
                 *, deadlines: Deadlines | None = None, slots: int = 16,
                 lag: LoopLag | None = None, budget: AnswerBudget | None = None):
        self.info = info
        self._budget = budget or AnswerBudget()
        self._session = session
        self.deadlines = deadlines or Deadlines.within(timeout)
        self._slots = asyncio.Semaphore(slots)
        self._queued = 0
        self._lag = lag
        d = self.deadlines
        self._timeout = aiohttp.ClientTimeout(total=None, connect=None,
                                              sock_connect=d.connect,
                                              sock_read=max(d.first_byte, d.stall))

    @property
    def id(self) -> str:
        """The node id."""
        return self.info.id

    @property
    def queued(self) -> int:
        """Requests to this node waiting inside the client for a slot right now."""
        return self._queued

    async def _request(self, method: str, path: str, *, limit: int,
                       body: bytes | None = None, json_body: Any = None,
                       publisher: Publisher | None = None, ok: tuple[int, ...] = (200,),
                       headers: dict[str, str] | None = None,
                       consume: Callable[[bytes], None] | None = None,
                       free: int | None = None) -> tuple[int, bytes]:
        """One request; returns the status and the answer (at most ``limit`` bytes).

        With ``consume``, a successful answer is passed to it piece by piece
        instead of being kept (the returned bytes are then empty).  ``free``:
        bytes of the answer held without reserving from the client's
        :class:`AnswerBudget` (never more than the budget's ``free``, its default).

        Raises:
            NodeTimeoutError, NodeStatusError, NodeAnswerError, NodeError.
        """
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if publisher is not None:
            digest = hashlib.sha256(body or b"").digest()
            headers.update(sign_write(publisher, self.id, method, path, digest))
        queued = time.monotonic()
        self._queued += 1
        try:
            await self._slots.acquire()
        finally:
            self._queued -= 1
        try:
            started = time.monotonic()
            metrics.observe_node_queue(self.id, started - queued)
            phase = "connect"
            charge = _Charge(self._budget.free if free is None else min(free, self._budget.free))
            try:
                async with asyncio.timeout(self.deadlines.total):
                    async with asyncio.timeout(self.deadlines.first_byte
                                               + self.deadlines.connect):
                        resp = await self._session.request(
                            method, self.info.url + path, data=body, headers=headers,
                            timeout=self._timeout, allow_redirects=False)
                    phase = "answer"
                    async with resp:
                        good = resp.status in ok
                        data = await self._read(resp, limit if good else 4096, method, path,
                                                consume if good else None, charge)
                        answer = bytes(data)
                        del data
            except TimeoutError as exc:
                if charge.waiting:
                    raise NodeTimeoutError(f"node {self.id}: {method} {path}: no room in the "
                                           "client's answer budget in time", "client") from exc
                raise self._timed_out(method, path, phase, started) from exc
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                raise NodeError(f"node {self.id}: {method} {path} failed: "
                                f"{type(exc).__name__} {exc}"[:400]) from None
        finally:
            self._slots.release()
            await self._budget.release(charge.reserved)
        if resp.status not in ok:
            text = answer[:200].decode("utf-8", "replace").strip()
            raise NodeStatusError(f"node {self.id}: {method} {path} -> {resp.status} {text}",
                                  resp.status)
        return resp.status, answer

    def _timed_out(self, method: str, path: str, phase: str, started: float) -> NodeTimeoutError:
        elapsed = time.monotonic() - started
        lag = self._lag.worst_since(started) if self._lag is not None else 0.0
        blame = "client" if lag >= max(0.5, 0.25 * elapsed) else "node"
        note = f" (the client's event loop stalled {lag:.1f} s meanwhile)" \
            if blame == "client" else ""
        return NodeTimeoutError(f"node {self.id}: {method} {path}: no {phase} within "
                                f"{elapsed:.1f} s{note}", blame)

    async def _read(self, resp: aiohttp.ClientResponse, limit: int, method: str,
                    path: str, consume: Callable[[bytes], None] | None,
                    charge: _Charge) -> bytearray:
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise NodeAnswerError(f"node {self.id}: {method} {path}: answer of {declared} "
                                  f"bytes, at most {limit} expected")
        data = bytearray()
        got = 0
        while True:
            piece = await resp.content.read(READ_PIECE)
            if not piece:
                break
            got += len(piece)
            if got > limit:
                raise NodeAnswerError(f"node {self.id}: {method} {path}: answer over "
                                      f"{limit} bytes")
            if consume is None:
                while len(data) + len(piece) > charge.free + charge.reserved:
                    charge.waiting = True
                    await self._budget.reserve(AnswerBudget.STEP)
                    charge.waiting = False
                    charge.reserved += AnswerBudget.STEP
                data += piece
            else:
                consume(piece)
        if declared is not None and got != declared:
            raise NodeError(f"node {self.id}: {method} {path}: answer cut short "
                            f"({got} of {declared} bytes)")
        return data

    async def put_shard(self, shard_id: str, body: bytes, publisher: Publisher) -> bool:
        """Store a shard body; True if the node did not hold it before."""
        status, _ = await self._request("PUT", f"/shards/{shard_id}", body=body,
                                        publisher=publisher, ok=(200, 201),
                                        limit=SMALL_ANSWER_BYTES)
        return status == 201

    async def get_shard(self, shard_id: str, limit: int) -> bytes | None:
        """The stored shard body (at most ``limit`` bytes, see
        :func:`storage_network.wire.stripe.max_shard_bytes`), or None when the node
        says it has none (404)."""
        status, data = await self._request("GET", f"/shards/{shard_id}", ok=(200, 404),
                                           limit=limit)
        return data if status == 200 else None

    async def get_shards(self, shard_ids: list[str], limits: list[int]
                         ) -> list[memoryview | None]:
        """The stored bodies of ``shard_ids`` in one request per 10000 ids (None: not
        held), as views into the answer; ``limits[i]`` caps body i (bytes).

        Raises:
            NodeError: the request failed; NodeAnswerError: the answer is
            malformed, oversized, or a body is larger than its limit.
        """
        bodies: list[memoryview | None] = []
        for start in range(0, len(shard_ids), MAX_BATCH_IDS):
            batch = shard_ids[start:start + MAX_BATCH_IDS]
            caps = limits[start:start + MAX_BATCH_IDS]
            _, data = await self._request("POST", "/shards/batch-get", json_body={"ids": batch},
                                          limit=sum(caps) + 4 * len(batch))
            try:
                got = parse_get_answer(data, len(batch))
            except ShardBatchError as exc:
                raise NodeAnswerError(f"node {self.id}: POST /shards/batch-get: {exc}") from None
            for sid, body, cap in zip(batch, got, caps, strict=True):
                if body is not None and len(body) > cap:
                    raise NodeAnswerError(f"node {self.id}: POST /shards/batch-get: shard "
                                          f"{sid[:20]} of {len(body)} bytes, at most {cap}")
            bodies += got
        return bodies

    async def put_shards(self, shards: list[tuple[str, bytes]], publisher: Publisher
                         ) -> set[str]:
        """Store ``(shard id, body)`` pairs in one signed request; the ids that were new.

        Raises:
            NodeError: the node refused or did not store the batch.
        """
        _, data = await self._request("POST", "/shards/batch-put",
                                      body=encode_put_batch(shards), publisher=publisher,
                                      limit=SMALL_ANSWER_BYTES)
        what = "POST /shards/batch-put"
        doc = parse_json_answer(self.id, what, data)
        return set(_id_list(self.id, what, doc, "created", {sid for sid, _ in shards}))

    async def has(self, shard_ids: list[str], touch: Publisher | None = None) -> set[str]:
        """The subset of ``shard_ids`` the node claims to hold.

        Args:
            touch: a publisher about to reference these shards: the node then
                also sets their mtime to now, so a garbage collection running
                meanwhile keeps them (see :mod:`storage_network.upkeep.gc`).

        Raises:
            NodeError: the request failed; NodeAnswerError: the answer is
                malformed, oversized or names ids not asked.
        """
        present: set[str] = set()
        for start in range(0, len(shard_ids), HAS_BATCH):
            batch = shard_ids[start:start + HAS_BATCH]
            limit = 64 + sum(len(s) + 4 for s in batch)
            if touch is None:
                _, data = await self._request("POST", "/shards/has",
                                              json_body={"ids": batch}, limit=limit)
            else:
                body = json.dumps({"ids": batch, "touch": True}).encode()
                _, data = await self._request("POST", "/shards/has", body=body,
                                              publisher=touch, limit=limit,
                                              headers={"Content-Type": "application/json"})
            doc = parse_json_answer(self.id, "POST /shards/has", data)
            present.update(_id_list(self.id, "POST /shards/has", doc, "present", set(batch)))
        return present

    async def delete_shard(self, shard_id: str, before: float, publisher: Publisher) -> bool:
        """Delete a shard unless it was written or touched at or after ``before`` (unix s).

        Returns:
            True if deleted; False if absent or kept because it is recent (412).
        """
        status, _ = await self._request("DELETE", f"/shards/{shard_id}?before={before:.3f}",
                                        publisher=publisher, ok=(204, 404, 412),
                                        limit=SMALL_ANSWER_BYTES)
        return status == 204

    async def _listing(self, path: str, fields: int) -> list[list[str]]:
        """The lines of a listing, each split into ``fields`` fields; parsed while it
        arrives (no more than one line of the answer is kept unparsed).

        Raises:
            NodeAnswerError: a line too long, too many lines, a line with
                another number of fields.
        """
        rows: list[list[str]] = []
        tail = bytearray()

        def take(line: bytes | bytearray) -> None:
            if not line:
                return
            if len(rows) >= MAX_LISTING_ENTRIES:
                raise NodeAnswerError(f"node {self.id}: GET {path}: more than "
                                      f"{MAX_LISTING_ENTRIES} lines")
            parts = bytes(line).decode("utf-8", "replace").split()
            if len(parts) != fields:
                raise NodeAnswerError(f"node {self.id}: malformed listing line "
                                      f"{bytes(line[:100])!r}")
            rows.append(parts)

        def consume(piece: bytes) -> None:
            tail.extend(piece)
            lines = tail.split(b"\n")
            for line in lines[:-1]:
                take(line)
            del tail[:len(tail) - len(lines[-1])]
            if len(tail) > MAX_LISTING_LINE:
                raise NodeAnswerError(f"node {self.id}: GET {path}: a line over "
                                      f"{MAX_LISTING_LINE} bytes")

        await self._request("GET", path, limit=MAX_LISTING_ENTRIES * MAX_LISTING_LINE,
                            consume=consume)
        take(tail)
        return rows

    async def list_shards(self) -> list[ListedShard]:
        """Every shard the node lists (``GET /shards``)."""
        rows = await self._listing("/shards", 3)
        try:
            return [ListedShard(i, int(s), float(t)) for i, s, t in rows]
        except ValueError as exc:
            raise NodeAnswerError(f"node {self.id}: malformed shard listing: {exc}") from None

    async def list_records(self) -> list[ListedRecord]:
        """Every record the node lists (``GET /records``)."""
        rows = await self._listing("/records", 4)
        try:
            return [ListedRecord(k, int(s), float(m), float(a)) for k, s, m, a in rows]
        except ValueError as exc:
            raise NodeAnswerError(f"node {self.id}: malformed record listing: {exc}") from None

    async def prove(self, nonce: bytes, shard_ids: list[str]) -> bytes:
        """The node's raw answer to a storage challenge (see :mod:`storage_network.wire.proofs`)."""
        _, data = await self._request("POST", "/proofs",
                                      json_body={"nonce": nonce.hex(), "ids": shard_ids},
                                      limit=max_answer_bytes(len(shard_ids)))
        return data

    async def put_record(self, key: str, data: bytes, publisher: Publisher) -> int:
        """Store a signed record (or tombstone) under ``key``; returns the status:
        201 stored, 200 replaced or already held.

        Raises:
            NodeStatusError: with status 409 when the node holds a newer version
                or a record of another content (see :mod:`storage_network.wire.record`).
        """
        status, _ = await self._request("PUT", f"/records/{key}", body=data,
                                        publisher=publisher, ok=(200, 201),
                                        limit=SMALL_ANSWER_BYTES)
        return status

    async def get_record(self, key: str, peek: bool = False) -> bytes | None:
        """The record bytes under ``key`` (at most :data:`MAX_RECORD_BYTES`), or None
        when absent (404).

        Args:
            peek: a maintenance read (inventory, audit, gc, repair): sends
                ``X-Nixshard-Peek: 1`` so the node does not count it as a use
                of the record (its last-read time stays).
        """
        status, data = await self._request("GET", f"/records/{key}", ok=(200, 404),
                                           headers={PEEK_HEADER: "1"} if peek else None,
                                           limit=MAX_RECORD_BYTES, free=RECORD_FREE_BYTES)
        return data if status == 200 else None

    async def delete_record(self, key: str, sha256_hex: str, publisher: Publisher) -> bool:
        """Delete record ``key`` if the stored bytes have SHA-256 ``sha256_hex``.

        Returns:
            True if deleted; False if absent or replaced meanwhile (412).
        """
        status, _ = await self._request("DELETE", f"/records/{key}?sha256={sha256_hex}",
                                        publisher=publisher, ok=(204, 404, 412),
                                        limit=SMALL_ANSWER_BYTES)
        return status == 204

    async def health(self) -> dict[str, Any]:
        """The node's ``/healthz`` JSON object."""
        _, data = await self._request("GET", "/healthz", limit=SMALL_ANSWER_BYTES)
        return parse_json_answer(self.id, "GET /healthz", data)

"""Audit: challenge every node to prove it holds a random sample of its shards.

What a node should hold: (a) its *home* shards, shard i of every known
stripe whose ranking (``placement.chunk_homes(network, chunk_id, n)``)
puts the node at position i < n, and (b) the shards of known stripes it
lists in ``GET /shards`` (moved there by repair).  "Known" stripes are
those of the live records the scan finds (:mod:`storage_network.upkeep.record_scan`).

Memory grows with the sample, not with the network: the records stream past
once and every node's listing is walked page by page, each feeding a
bottom-k sketch per node (:mod:`storage_network.upkeep.audit_sample`): the
node's sample is the ``sample`` shards with the smallest salted hashes among
(a) and (b), a uniform sample without replacement.  For (b) a node keeps the
:data:`LISTED_FACTOR` x ``sample`` listed ids with the smallest hashes, and
those whose stripe the scan finds count; on a node whose listing is mostly
shards of unknown stripes, its moved shards are under-represented.  A node's
``expected`` count is exact up to the sample size and estimated above it.

Per node a uniform sample without replacement of ``sample`` of those shards
(all of them when fewer) is challenged (:mod:`storage_network.wire.proofs`, one
``POST /proofs`` per at most 1000 ids, with a fresh random nonce each), and
every sampled shard is classified:

* held: a valid proof within the deadline;
* missing: the node answers that it does not hold it;
* corrupt: the proof does not lead to the stripe root;
* late: a valid proof, but the answer took longer than ``deadline`` seconds;
* unreachable: no usable answer (connection error, timeout, HTTP error,
  an answer that cannot be parsed).

Sample size: a node that lost a fraction f of its shards passes one
challenged shard with probability 1 - f, so s independent draws all pass
with probability (1 - f)^s; drawing without replacement only lowers it.
For f = 5% and s = 90: 0.95^90 = 0.0099 < 0.01, so one run flags such a
node with probability >= 99%.  :func:`sample_size` computes the smallest
such s, s = ceil(ln(1 - confidence) / ln(1 - f)), and gives the default.

The node's verdict is the worst class found, in the order corrupt, missing,
unreachable, late; "ok" when every sampled shard was held.  The report
lists the corrupt and missing shard ids of each node: ``nixshard repair
--from-audit`` rebuilds them, and reads back every shard of the nodes
found corrupt or missing (:mod:`storage_network.upkeep.audit_findings`).  The run's pass
fraction (held / sampled, 0 for a node that could not be reached at all)
feeds :class:`storage_network.nodes.scores.Scores` (see :func:`update_scores`).

Signed evidence: a node whose network entry names a key signs its proof answers
(:mod:`storage_network.wire.node_answer_auth`); an answer not signed by that key
counts as unreachable (whoever answered is not the node).  A signed answer that
shows corrupt or missing shards, or does not parse, is kept in the node's row
(:attr:`NodeAudit.evidence`, at most :data:`MAX_EVIDENCE` answers), with the
challenge and the answer bytes, so the failure can be shown to anyone holding
the node's key: :func:`storage_network.upkeep.audit_findings.verify_evidence`
checks it again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from storage_network.client import NetworkClient
from storage_network.errors import NodeError, ShardProofError
from storage_network.nodes.listing_pages import walk_shards
from storage_network.nodes.placement import chunk_homes
from storage_network.nodes.scores import Scores
from storage_network.upkeep.audit_sample import BottomSample
from storage_network.upkeep.record_scan import RecordScan
from storage_network.wire.node_answer_auth import SignedAnswer, evidence_json
from storage_network.wire.proofs import MAX_IDS, MalformedAnswerError, ShardOutcome, check_answer
from storage_network.wire.stripe import parse_shard_id, shard_id

log = logging.getLogger("nixshard.audit")

DEFAULT_MISSING_FRACTION = 0.05
DEFAULT_CONFIDENCE = 0.99
DEFAULT_DEADLINE = 10.0
NONCE_BYTES = 32
MAX_NOTES = 5
MAX_EVIDENCE = 3
"""Signed failed proof answers kept per node (each up to a whole answer of 1000 shards)."""
LISTED_FACTOR = 4
"""A node's listed shard ids kept per sampled shard (see the module docstring)."""
STRIPES_COUNTED = 4096
"""Stripes counted exactly in the report; more are estimated (bottom-k sketch)."""
NODES_LISTED_AT_ONCE = 16
"""Shard listings walked at once."""
CLASSES = ("held", "missing", "corrupt", "late", "unreachable")
# A node's verdict: the first class found among these, else "ok".
VERDICT_ORDER = ("corrupt", "missing", "unreachable", "late")


def sample_size(missing_fraction: float = DEFAULT_MISSING_FRACTION,
                confidence: float = DEFAULT_CONFIDENCE) -> int:
    """Shards to sample so that a node missing ``missing_fraction`` of its shards is
    caught with probability at least ``confidence``.

    The smallest s with (1 - missing_fraction)^s <= 1 - confidence (sampling
    without replacement only lowers the miss probability): 90 for 5% and 99%.

    Raises:
        ValueError: a fraction or confidence outside (0, 1).
    """
    if not 0 < missing_fraction < 1 or not 0 < confidence < 1:
        raise ValueError("missing_fraction and confidence must lie strictly between 0 and 1")
    s = math.ceil(math.log(1 - confidence) / math.log(1 - missing_fraction))
    while (1 - missing_fraction) ** s > 1 - confidence:  # guards against rounding
        s += 1
    while s > 1 and (1 - missing_fraction) ** (s - 1) <= 1 - confidence:
        s -= 1
    return s


DEFAULT_SAMPLE = sample_size()


@dataclass
class NodeAudit:
    """One node's row of the report: counts per class, verdict, score.

    Attributes:
        expected: shards the node should hold (home shards + listed shards of known stripes).
        sampled: shards challenged; held + missing + corrupt + late + unreachable.
        listing_error: why ``GET /shards`` failed, if it did.
        answer_seconds: the slowest challenge answer of the node.
        score: the node's score after this run (set by :func:`update_scores`).
        bad_shards: sampled shard id -> class, for the shards not held.
        notes: the first few error messages, for people.
        evidence: signed proof answers that show a failure (see the module
            docstring), each ``{"shards": {id: class}, "signed_answer":``
            :func:`~storage_network.wire.node_answer_auth.evidence_json` ``}``;
            ``shards`` is empty for an answer that did not parse.
    """

    node_id: str
    expected: int = 0
    sampled: int = 0
    held: int = 0
    missing: int = 0
    corrupt: int = 0
    late: int = 0
    unreachable: int = 0
    listing_error: str | None = None
    answer_seconds: float = 0.0
    score: float | None = None
    bad_shards: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``"ok"``, or the worst class found: corrupt, missing, unreachable, late."""
        if self.sampled == 0 and self.listing_error is not None:
            return "unreachable"
        for name in VERDICT_ORDER:
            if getattr(self, name):
                return name
        return "ok"

    @property
    def pass_fraction(self) -> float | None:
        """held / sampled; 0 for a node that could not even be listed; None if nothing to ask."""
        if self.sampled:
            return self.held / self.sampled
        return 0.0 if self.listing_error is not None else None

    def counts(self) -> dict[str, int]:
        """expected, sampled and the count of every class."""
        return {"expected": self.expected, "sampled": self.sampled,
                **{name: getattr(self, name) for name in CLASSES}}

    def note(self, text: str) -> None:
        """Keep ``text`` among the first :data:`MAX_NOTES` notes."""
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)

    def _count(self, sid: str, name: str, detail: str | None = None) -> None:
        setattr(self, name, getattr(self, name) + 1)
        if name != "held":
            self.bad_shards[sid] = name
        if detail is not None:
            self.note(detail)

    def shards_in(self, name: str) -> list[str]:
        """The sampled shard ids of class ``name`` (``"corrupt"``, ``"missing"``, ...), sorted."""
        return sorted(sid for sid, cls in self.bad_shards.items() if cls == name)

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready values; ``corrupt_shards`` and ``missing_shards`` are
        what ``nixshard repair --from-audit`` reads
        (:mod:`storage_network.upkeep.audit_findings`)."""
        return {"node": self.node_id, **self.counts(), "verdict": self.verdict,
                "score": self.score, "answer_seconds": round(self.answer_seconds, 3),
                "listing_error": self.listing_error, "bad_shards": self.bad_shards,
                "corrupt_shards": self.shards_in("corrupt"),
                "missing_shards": self.shards_in("missing"), "notes": self.notes,
                "signed_evidence": self.evidence}

    def keep_evidence(self, signed: SignedAnswer | None, request: bytes, answer: bytes,
                      shards: dict[str, str]) -> None:
        """Keep a signed failed answer (see :attr:`evidence`); nothing when it is not
        signed (the node's entry names no key) or :data:`MAX_EVIDENCE` are kept."""
        if signed is not None and len(self.evidence) < MAX_EVIDENCE:
            self.evidence.append({"shards": shards,
                                  "signed_answer": evidence_json(signed, request, answer)})


@dataclass
class AuditReport:
    """The result of one audit run: a row per node, in network-file order.

    Attributes:
        records: live records scanned.
        stripes: distinct stripes they reference (estimated above
            :data:`STRIPES_COUNTED`).
        bad_records: record key -> why no listed copy of it could be opened.
    """

    nodes: list[NodeAudit]
    records: int
    stripes: int
    sample: int
    deadline: float
    seconds: float = 0.0
    bad_records: dict[str, str] = field(default_factory=dict)

    @property
    def flagged(self) -> list[NodeAudit]:
        """The rows whose verdict is not ok."""
        return [row for row in self.nodes if row.verdict != "ok"]

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {"records": self.records, "stripes": self.stripes, "sample": self.sample,
                "deadline": self.deadline, "seconds": round(self.seconds, 3),
                "flagged": [row.node_id for row in self.flagged],
                "nodes": [row.to_json() for row in self.nodes]}


@runtime_checkable
class SignsProofs(Protocol):
    """A node store that keeps the signed answers of its proofs
    (:meth:`storage_network.nodes.http.NodeClient.signed_proof`)."""

    def signed_proof(self, nonce: bytes) -> tuple[SignedAnswer, bytes] | None:
        """The signed answer to the challenge of ``nonce`` and its request body."""
        ...


async def _challenge(net: NetworkClient, row: NodeAudit, ids: Sequence[str],
                     deadline: float) -> None:
    """Challenge ``ids`` on the node of ``row``, batch by batch, and count the outcomes."""
    loop = asyncio.get_running_loop()
    client = net.nodes[row.node_id]
    for start in range(0, len(ids), MAX_IDS):
        batch = list(ids[start:start + MAX_IDS])
        nonce = secrets.token_bytes(NONCE_BYTES)
        began = time.monotonic()
        try:
            answer = await client.prove(nonce, batch)
        except NodeError as exc:
            for sid in batch:
                row._count(sid, "unreachable")
            row.note(str(exc))
            continue
        took = time.monotonic() - began
        row.answer_seconds = max(row.answer_seconds, took)
        kept = client.signed_proof(nonce) if isinstance(client, SignsProofs) else None
        signed, request = kept if kept is not None else (None, b"")
        try:
            outcomes: list[ShardOutcome] = await loop.run_in_executor(
                net.pool, check_answer, nonce, batch, answer)
        except MalformedAnswerError as exc:
            for sid in batch:
                row._count(sid, "unreachable")
            row.note(f"node {row.node_id}: malformed proof answer: {exc}")
            row.keep_evidence(signed, request, answer, {})
            continue
        failed = {o.shard_id: "missing" if not o.present else "corrupt"
                  for o in outcomes if not o.held}
        if failed:
            row.keep_evidence(signed, request, answer, failed)
        for outcome in outcomes:
            sid = outcome.shard_id
            if not outcome.present:
                row._count(sid, "missing", f"shard {sid}: absent")
            elif outcome.error is not None:
                row._count(sid, "corrupt", str(outcome.error))
            elif took > deadline:
                row._count(sid, "late", f"shard {sid}: proven after {took:.2f} s "
                                        f"(deadline {deadline:g} s)")
            else:
                row._count(sid, "held")


class _Sampler:
    """The sketches of one run: per node its home and listed shards, and the stripes."""

    def __init__(self, net: NetworkClient, sample: int, salt: bytes) -> None:
        self.net = net
        ids = [node.id for node in net.network.nodes]
        self.homes = {node_id: BottomSample(sample, salt) for node_id in ids}
        self.listed = {node_id: BottomSample(LISTED_FACTOR * sample, salt) for node_id in ids}
        self.known: dict[str, dict[str, int]] = {node_id: {} for node_id in ids}
        self.stripes = BottomSample(STRIPES_COUNTED, salt)
        self.records = 0
        self._wanted: dict[bytes, list[tuple[str, int, str, int]]] = {}

    async def walk(self, row: NodeAudit) -> None:
        """Offer every shard ``row``'s node lists to its listed sketch."""
        sketch = self.listed[row.node_id]
        try:
            async for entry in walk_shards(self.net.nodes[row.node_id]):
                sketch.offer(entry.id)
        except NodeError as exc:
            row.listing_error = str(exc)
            row.note(str(exc))

    def listed_done(self) -> None:
        """Index the kept listed ids by stripe root, for :meth:`offer_record`."""
        for node_id, sketch in self.listed.items():
            for h, sid in sketch.hashed():
                try:
                    root, index = parse_shard_id(sid)
                except ShardProofError:
                    continue
                self._wanted.setdefault(root, []).append((node_id, index, sid, h))

    def offer_record(self, chunks: Sequence[tuple[bytes, bytes, int]]) -> None:
        """Offer the shards of one live record's stripes ``(root, chunk id, n)``."""
        self.records += 1
        for root, chunk_id, n in chunks:
            self.stripes.offer(root.hex())
            for index, node in enumerate(chunk_homes(self.net.network, chunk_id, n)):
                self.homes[node.id].offer(shard_id(root, index))
            for node_id, index, sid, h in self._wanted.get(root, ()):
                if index < n:
                    self.known[node_id][sid] = h

    def picks(self, node_id: str, sample: int) -> tuple[list[str], int]:
        """The node's sample (by rising hash) and its estimated expected count."""
        home = self.homes[node_id]
        pool = {sid: h for h, sid in home.hashed()}
        extra = {sid: h for sid, h in self.known[node_id].items() if sid not in pool}
        pool.update(extra)
        picked = sorted(pool, key=pool.__getitem__)[:sample]
        listed = self.listed[node_id]
        scale = listed.distinct() / len(listed) if len(listed) else 0.0
        return picked, home.distinct() + round(len(extra) * scale)


async def audit_network(net: NetworkClient, *, sample: int = DEFAULT_SAMPLE,
                        deadline: float = DEFAULT_DEADLINE, rng: random.Random,
                        scan: RecordScan | None = None) -> AuditReport:
    """Challenge every node of the network on a sample of the shards it should hold.

    Args:
        sample: shards challenged per node at most (see :func:`sample_size`).
        deadline: seconds a node has to answer one challenge request; a valid
            proof that comes later counts as late.  The HTTP timeout of ``net``
            should be longer, or slow nodes count as unreachable.
        rng: draws the hash salt of the samples (the nonces come from :mod:`secrets`).
        scan: the record scan to read (default: a new one of ``net``); after
            the run its ``unreachable`` names the nodes whose records could not
            be listed, and the report's ``bad_records`` the keys no copy of
            which opened.

    Never raises for node failures: they are counted in the report.
    """
    if sample < 1:
        raise ValueError(f"sample must be at least 1, not {sample}")
    if not deadline > 0:
        raise ValueError(f"deadline must be positive, not {deadline}")
    began = time.monotonic()
    rows = [NodeAudit(node.id) for node in net.network.nodes]
    sampler = _Sampler(net, sample, rng.randbytes(16))
    walking = asyncio.Semaphore(NODES_LISTED_AT_ONCE)

    async def walk(row: NodeAudit) -> None:
        async with walking:
            await sampler.walk(row)

    await asyncio.gather(*(walk(row) for row in rows))
    sampler.listed_done()
    bad_records: dict[str, str] = {}
    async for item in scan or RecordScan(net):
        top = item.newest
        if top is None:
            if item.problems:
                bad_records[item.key] = "; ".join(item.problems)
        elif not top.tombstone:
            man = top.manifest
            sampler.offer_record([(ref.root, ref.chunk_id, man.k + man.m)
                                  for ref in man.chunks])
    picks = []
    for row in rows:
        picked, row.expected = sampler.picks(row.node_id, sample)
        row.sampled = len(picked)
        picks.append(picked)
    await asyncio.gather(*(_challenge(net, row, picked, deadline)
                           for row, picked in zip(rows, picks, strict=True)))
    for row in rows:
        if row.verdict != "ok":
            log.info("node %s: %s (%d sampled: %d held, %d missing, %d corrupt, %d late, "
                     "%d unreachable)", row.node_id, row.verdict, row.sampled, row.held,
                     row.missing, row.corrupt, row.late, row.unreachable)
    return AuditReport(rows, sampler.records, sampler.stripes.distinct(), sample, deadline,
                       time.monotonic() - began, bad_records)


def update_scores(report: AuditReport, scores: Scores, now: float | None = None) -> None:
    """Fold the run into ``scores`` and set each row's ``score``.

    A node with nothing to challenge (and reachable) keeps its score.
    """
    for row in report.nodes:
        fraction = row.pass_fraction
        if fraction is None:
            row.score = scores.score(row.node_id)
            continue
        last = {**row.counts(), "verdict": row.verdict}
        row.score = scores.update(row.node_id, fraction, last, now).score

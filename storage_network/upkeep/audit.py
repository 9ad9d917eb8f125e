"""Audit: challenge every node to prove it holds a random sample of its shards.

What a node should hold: (a) its *home* shards, shard i of every known
stripe whose ranking (``placement.chunk_homes(network, chunk_id, n)``)
puts the node at position i < n, and (b) the shards of known stripes it
lists in ``GET /shards`` (moved there by repair).  "Known" stripes are
those of the records in the inventory (:mod:`storage_network.upkeep.inventory`).

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
from storage_network.nodes.placement import chunk_homes
from storage_network.nodes.scores import Scores
from storage_network.upkeep.inventory import Inventory
from storage_network.wire.listing import ListedShard
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
    """The result of one audit run: a row per node, in network-file order."""

    nodes: list[NodeAudit]
    records: int
    stripes: int
    sample: int
    deadline: float
    seconds: float = 0.0

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


def expected_shards(net: NetworkClient, inventory: Inventory,
                    listings: dict[str, list[ListedShard]]) -> dict[str, set[str]]:
    """Node id -> ids of the shards it should hold: home shards + listed shards of known stripes.

    Args:
        listings: what each node listed (nodes that could not be listed are absent).
    """
    expected: dict[str, set[str]] = {node.id: set() for node in net.network.nodes}
    for root, stripe in inventory.stripes.items():
        for index, node in enumerate(chunk_homes(net.network, stripe.ref.chunk_id, stripe.n)):
            expected[node.id].add(shard_id(root, index))
    for node_id, listed in listings.items():
        for entry in listed:
            try:
                root, index = parse_shard_id(entry.id)
            except ShardProofError:
                continue
            known = inventory.stripes.get(root)
            if known is not None and index < known.n:
                expected[node_id].add(entry.id)
    return expected


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


async def audit_network(net: NetworkClient, inventory: Inventory, *,
                        sample: int = DEFAULT_SAMPLE, deadline: float = DEFAULT_DEADLINE,
                        rng: random.Random) -> AuditReport:
    """Challenge every node of the network on a sample of the shards it should hold.

    Args:
        inventory: the records and stripes to audit (see
            :func:`~storage_network.upkeep.inventory.take_inventory`).
        sample: shards challenged per node at most (see :func:`sample_size`).
        deadline: seconds a node has to answer one challenge request; a valid
            proof that comes later counts as late.  The HTTP timeout of ``net``
            should be longer, or slow nodes count as unreachable.
        rng: draws the samples (the nonces come from :mod:`secrets`).

    Never raises for node failures: they are counted in the report.
    """
    if sample < 1:
        raise ValueError(f"sample must be at least 1, not {sample}")
    if not deadline > 0:
        raise ValueError(f"deadline must be positive, not {deadline}")
    began = time.monotonic()
    rows = [NodeAudit(node.id) for node in net.network.nodes]

    async def listing(row: NodeAudit) -> list[ListedShard] | None:
        try:
            return await net.nodes[row.node_id].list_shards()
        except NodeError as exc:
            row.listing_error = str(exc)
            row.note(str(exc))
            return None

    listed = await asyncio.gather(*(listing(row) for row in rows))
    listings = {row.node_id: entries for row, entries in zip(rows, listed, strict=True)
                if entries is not None}
    expected = expected_shards(net, inventory, listings)
    picks = []
    for row in rows:
        candidates = sorted(expected[row.node_id])
        row.expected = len(candidates)
        picked = rng.sample(candidates, min(sample, len(candidates)))
        row.sampled = len(picked)
        picks.append(picked)
    await asyncio.gather(*(_challenge(net, row, picked, deadline)
                           for row, picked in zip(rows, picks, strict=True)))
    for row in rows:
        if row.verdict != "ok":
            log.info("node %s: %s (%d sampled: %d held, %d missing, %d corrupt, %d late, "
                     "%d unreachable)", row.node_id, row.verdict, row.sampled, row.held,
                     row.missing, row.corrupt, row.late, row.unreachable)
    return AuditReport(rows, len(inventory.records), len(inventory.stripes), sample, deadline,
                       time.monotonic() - began)


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

"""What an audit hands to repair: the shards it found corrupt or missing, per node.

``nixshard audit --json`` (and ``--report FILE``) writes the audit report
(:meth:`storage_network.upkeep.audit.AuditReport.to_json`); each row of its
``nodes`` list carries, besides the counts::

    {"node": "node-3", "verdict": "corrupt",
     "corrupt_shards": ["<64 hex>.<index>", ...],   # sampled, proof failed
     "missing_shards": ["<64 hex>.<index>", ...],   # sampled, node said absent
     ...}

``nixshard repair --from-audit FILE`` reads it back (:func:`load_findings`):
every node whose verdict is ``corrupt`` or ``missing``, or with a listed
shard, is a *suspect*.  Since an audit only samples, repair reads back and
verifies every shard such a node claims (:mod:`storage_network.upkeep.shard_check`),
the listed ones included, and rebuilds each that does not verify or is not
served: the listed ones and those the sample missed.

The file is read defensively: at most :data:`MAX_FINDINGS_BYTES`, JSON
nested no deeper than the format, node ids of the network only, shard ids
of the documented form.

A row may also carry ``signed_evidence``: proof answers of a node with a key
that show the failures, signed by the node
(:mod:`storage_network.wire.node_answer_auth`).  :func:`verify_evidence` checks
one of them from its bytes alone (the node's key, the signature, the challenge
and the answer), so the failure can be shown to anyone, not only asserted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage_network.capped_file import read_capped
from storage_network.errors import ShardProofError, StorageNetworkError
from storage_network.wire.node_answer_auth import EvidenceError, open_evidence
from storage_network.wire.proofs import MAX_IDS, MalformedAnswerError, check_answer
from storage_network.wire.stripe import parse_shard_id

MAX_FINDINGS_BYTES = 256 * 1024 * 1024
SUSPECT_VERDICTS = ("corrupt", "missing")


class FindingsFileError(StorageNetworkError):
    """An audit report given to repair cannot be read, or is not an audit report."""


@dataclass(frozen=True)
class AuditFindings:
    """Per node: shard ids found corrupt or missing; the nodes to read back in full.

    Attributes:
        bad: node id -> ids of the shards an audit found corrupt or missing there.
        suspects: ids of the nodes whose verdict was corrupt or missing.
    """

    bad: dict[str, frozenset[str]] = field(default_factory=dict)
    suspects: frozenset[str] = frozenset()

    @property
    def shard_count(self) -> int:
        """Shards listed over all nodes."""
        return sum(len(ids) for ids in self.bad.values())


def findings_from_rows(rows: Iterable[dict[str, Any]]) -> AuditFindings:
    """Findings of already validated report rows (``node``, ``verdict``, id lists)."""
    bad: dict[str, frozenset[str]] = {}
    suspects = set()
    for row in rows:
        ids = frozenset([*row.get("corrupt_shards", ()), *row.get("missing_shards", ())])
        if ids:
            bad[row["node"]] = ids
        if row.get("verdict") in SUSPECT_VERDICTS:
            suspects.add(row["node"])
    return AuditFindings(bad, frozenset(suspects))


def _ids(path: Path, node: str, row: dict[str, Any], name: str) -> list[str]:
    items = row.get(name, [])
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise FindingsFileError(f"{path}: node {node}: {name!r} is not a list of shard ids")
    for item in items:
        try:
            parse_shard_id(item)
        except ShardProofError as exc:
            raise FindingsFileError(f"{path}: node {node}: {exc}") from None
    return items


def load_findings(path: Path, node_ids: Iterable[str]) -> AuditFindings:
    """Read an audit report (JSON) written by ``nixshard audit --json``.

    Args:
        node_ids: the network's node ids; a report naming another node is refused.

    Raises:
        FindingsFileError: unreadable, larger than :data:`MAX_FINDINGS_BYTES`,
            not JSON, not an audit report, an unknown node or a bad shard id
            (the message says which).
    """
    try:
        data = read_capped(path, MAX_FINDINGS_BYTES)
    except OSError as exc:
        raise FindingsFileError(f"cannot read audit report {path}: {exc}") from exc
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FindingsFileError(f"{path}: not JSON ({type(exc).__name__})") from None
    rows = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise FindingsFileError(f"{path}: not an audit report (no \"nodes\" list); "
                                "write one with `nixshard audit --json`")
    known = set(node_ids)
    checked = []
    for row in rows:
        node = row.get("node") if isinstance(row, dict) else None
        if not isinstance(node, str) or node not in known:
            raise FindingsFileError(f"{path}: a row names node {str(node)[:80]!r}, "
                                    "which is not in the network file")
        verdict = row.get("verdict")
        if not isinstance(verdict, str):
            raise FindingsFileError(f"{path}: node {node}: no verdict")
        checked.append({"node": node, "verdict": verdict,
                        "corrupt_shards": _ids(path, node, row, "corrupt_shards"),
                        "missing_shards": _ids(path, node, row, "missing_shards")})
    return findings_from_rows(checked)


def _challenge_of(request: bytes) -> tuple[bytes, list[str]]:
    """The nonce and shard ids of a ``POST /proofs`` body (:mod:`storage_network.wire.proofs`).

    Raises:
        EvidenceError: not such a body.
    """
    try:
        doc = json.loads(request)
        nonce = bytes.fromhex(doc["nonce"])
        ids = doc["ids"]
    except (ValueError, RecursionError, TypeError, KeyError):
        raise EvidenceError("signed answer: its request is not a proof challenge") from None
    if not isinstance(ids, list) or len(ids) > MAX_IDS or not all(
            isinstance(sid, str) for sid in ids):
        raise EvidenceError("signed answer: the challenge does not list shard ids")
    for sid in ids:
        try:
            parse_shard_id(sid)
        except ShardProofError as exc:
            raise EvidenceError(f"signed answer: the challenge names {exc}") from None
    return nonce, ids


def verify_evidence(item: Any) -> tuple[str, dict[str, str]]:
    """Check one entry of a report row's ``signed_evidence`` from its bytes alone.

    ``item`` is ``{"shards": ..., "signed_answer": {...}}``; only the signed answer
    is trusted: its key must be the node's (the id derives from it), its signature
    must verify over the challenge and the answer, and the answer must fail.

    Returns:
        ``(node id, {shard id: "missing" | "corrupt" | "malformed answer"})``: what
        the node's own signed answer shows.

    Raises:
        EvidenceError: malformed, not signed by the node's key, not an answer to a
            proof challenge, or an answer that proves every shard (no failure).
    """
    if not isinstance(item, dict):
        raise EvidenceError("evidence entry is not a JSON object")
    signed, request, answer = open_evidence(item.get("signed_answer"))
    if (signed.method, signed.path, signed.status) != ("POST", "/proofs", 200):
        raise EvidenceError(f"signed answer of node {signed.node_id} is not a proof answer "
                            f"({signed.method} {signed.path[:80]} -> {signed.status})")
    nonce, ids = _challenge_of(request)
    try:
        outcomes = check_answer(nonce, ids, answer)
    except MalformedAnswerError:
        return signed.node_id, dict.fromkeys(ids, "malformed answer")
    failed = {o.shard_id: "missing" if not o.present else "corrupt"
              for o in outcomes if not o.held}
    if not failed:
        raise EvidenceError(f"signed answer of node {signed.node_id} proves every shard "
                            f"asked: it shows no failure")
    return signed.node_id, failed

"""storage_network.upkeep.audit_findings.verify_evidence: a signed proof answer shows a
failure only when the node's own signed bytes show it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from nacl.signing import SigningKey

from storage_network.upkeep.audit_findings import verify_evidence
from storage_network.wire.node_answer_auth import (
    NONCE_HEADER,
    AnswerKey,
    EvidenceError,
    evidence_json,
    new_nonce,
    sign_answer,
)
from storage_network.wire.proofs import encode_answer
from storage_node.identity import NodeIdentity
from tests.storage_node.samples import stripe

NODE = NodeIdentity(SigningKey(bytes(range(7, 39))))
CHALLENGE = bytes(range(32))


def item(request: bytes, answer: bytes, method: str = "POST", path: str = "/proofs",
         status: int = 200) -> dict[str, Any]:
    """A report's evidence entry: ``answer`` to ``request``, signed by :data:`NODE`."""
    nonce = new_nonce()
    headers = sign_answer(NODE.signing_key, NODE.node_id, method, path,
                          hashlib.sha256(request).digest(), {NONCE_HEADER: nonce}, status,
                          answer)
    signed = AnswerKey(NODE.node_id, NODE.public_key).check(method, path, request, nonce,
                                                            status, answer, headers)
    return {"shards": {}, "signed_answer": evidence_json(signed, request, answer)}


def challenge(ids: list[str]) -> bytes:
    return json.dumps({"nonce": CHALLENGE.hex(), "ids": ids}).encode()


def test_failures_are_read_from_the_signed_answer() -> None:
    shards = stripe(n=3, size=9000)
    ids = [sid for sid, _ in shards]
    rotten = bytearray(shards[1][1])
    rotten[-1] ^= 1
    answer = encode_answer(CHALLENGE, [(ids[0], shards[0][1]), (ids[1], bytes(rotten)),
                                       (ids[2], None)])
    node_id, failed = verify_evidence(item(challenge(ids), answer))
    assert node_id == NODE.node_id and failed == {ids[1]: "corrupt", ids[2]: "missing"}
    _, failed = verify_evidence(item(challenge(ids), b"\x07"))
    assert failed == dict.fromkeys(ids, "malformed answer")


def test_no_failure_or_no_proof_is_no_evidence() -> None:
    shards = stripe(n=2, size=5000)
    ids = [sid for sid, _ in shards]
    good = encode_answer(CHALLENGE, shards)
    with pytest.raises(EvidenceError, match="shows no failure"):
        verify_evidence(item(challenge(ids), good))
    with pytest.raises(EvidenceError, match="not a proof answer"):
        verify_evidence(item(b"", b"error: no record x", "GET", "/records/x", 404))
    for request, why in ((b"[]", "not a proof challenge"), (b"{", "not a proof challenge"),
                         (json.dumps({"nonce": "zz", "ids": ids}).encode(),
                          "not a proof challenge"),
                         (json.dumps({"nonce": "00", "ids": "x"}).encode(), "shard ids"),
                         (json.dumps({"nonce": "00", "ids": ["x"]}).encode(), "names")):
        with pytest.raises(EvidenceError, match=why):
            verify_evidence(item(request, b"\x00"))
    with pytest.raises(EvidenceError, match="not a JSON object"):
        verify_evidence([])

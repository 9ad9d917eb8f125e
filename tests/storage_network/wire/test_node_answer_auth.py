"""storage_network.wire.node_answer_auth: the signed message, the checks of an answer,
and evidence anyone can check."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from nacl.signing import SigningKey

from storage_network.errors import NodeAnswerError
from storage_network.wire.node_answer_auth import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    AnswerKey,
    EvidenceError,
    UnsignedAnswerError,
    answer_check,
    answer_message,
    evidence_json,
    new_nonce,
    open_evidence,
    sign_answer,
)
from storage_network.wire.write_auth import write_message
from storage_node.identity import NodeIdentity

NODE = NodeIdentity(SigningKey(bytes(range(1, 33))))
BODY = b'{"ids": []}'
ANSWER = b'{"present": []}'


def signed(nonce: str, *, key: SigningKey = NODE.signing_key, status: int = 200,
           answer: bytes = ANSWER) -> dict[str, str]:
    return sign_answer(key, NODE.node_id, "POST", "/shards/has", hashlib.sha256(BODY).digest(),
                       {NONCE_HEADER: nonce}, status, answer)


def test_message_is_domain_separated_and_binds_everything() -> None:
    digest = hashlib.sha256(b"x").digest()
    base = answer_message("n", "post", "/p", digest, "00" * 16, 200, digest)
    assert base.startswith(b"nixshard-node-answer-v1\nn\nPOST\n/p\n")
    assert not write_message("n", "POST", "/p", 0, "00" * 16, digest).startswith(
        b"nixshard-node-answer")
    changed = [answer_message("m", "POST", "/p", digest, "00" * 16, 200, digest),
               answer_message("n", "GET", "/p", digest, "00" * 16, 200, digest),
               answer_message("n", "POST", "/q", digest, "00" * 16, 200, digest),
               answer_message("n", "POST", "/p", bytes(32), "00" * 16, 200, digest),
               answer_message("n", "POST", "/p", digest, "01" * 16, 200, digest),
               answer_message("n", "POST", "/p", digest, "00" * 16, 404, digest),
               answer_message("n", "POST", "/p", digest, "00" * 16, 200, bytes(32))]
    assert len({base, *changed}) == 8


def test_check_accepts_the_nodes_answer_only() -> None:
    key = AnswerKey(NODE.node_id, NODE.public_key)
    nonce = new_nonce()
    good = key.check("POST", "/shards/has", BODY, nonce, 200, ANSWER, signed(nonce))
    assert good.valid() and good.node_id == NODE.node_id
    bad_cases: list[tuple[str, dict[str, str], str]] = [
        (nonce, signed(new_nonce()), "does not verify"),  # replayed from another request
        (nonce, signed(nonce, key=SigningKey(bytes(32))), "does not verify"),  # another key
        (nonce, signed(nonce, status=404), "does not verify"),
        (nonce, signed(nonce, answer=b"{}"), "does not verify"),
        (nonce, {}, "no X-Nixshard-Node-Signature header"),
        (nonce, {SIGNATURE_HEADER: "not base64!"}, "malformed"),
        (nonce, {SIGNATURE_HEADER: base64.b64encode(bytes(63)).decode()}, "malformed"),
        (nonce, {SIGNATURE_HEADER: "A" * 100_000}, "malformed"),
    ]
    for sent, headers, why in bad_cases:
        with pytest.raises(UnsignedAnswerError, match=why) as info:
            key.check("POST", "/shards/has", BODY, sent, 200, ANSWER, headers)
        assert isinstance(info.value, NodeAnswerError)  # the node is benched for it
        assert f"answer not signed by node {NODE.node_id}'s key" in str(info.value)


def test_unusable_key_in_the_network_entry_fails_every_answer() -> None:
    nonce = new_nonce()
    other = NodeIdentity(SigningKey(bytes(32)))
    for node_id, text, why in ((NODE.node_id, "bm90IGEga2V5", "unusable"),
                               (NODE.node_id, "!!", "unusable"),
                               ("node-1", NODE.public_key, f"is the key of node {NODE.node_id}"),
                               (other.node_id, NODE.public_key, "is the key of node")):
        with pytest.raises(UnsignedAnswerError, match=why):
            AnswerKey(node_id, text).check("POST", "/shards/has", BODY, nonce, 200, ANSWER,
                                           signed(nonce))


def test_node_signs_only_a_well_formed_nonce() -> None:
    for nonce in ("", "AB" * 16, "ab" * 15, "ab" * 17, "g" * 32):
        assert signed(nonce) == {}
    assert sign_answer(NODE.signing_key, NODE.node_id, "GET", "/records/x", bytes(32), {},
                       404, b"") == {}
    assert set(signed(new_nonce())) == {SIGNATURE_HEADER}


def test_answer_check_only_for_keyed_nodes_and_listed_statuses() -> None:
    assert answer_check("node-1", "", "POST", "/proofs", BODY, (200,)) is None
    check = answer_check(NODE.node_id, NODE.public_key, "GET", "/records/k", b"", (404,))
    assert check is not None and check.headers == {NONCE_HEADER: check.nonce}
    check(200, b"record bytes", {})  # a record body is not the node's to sign
    assert check.signed is None
    with pytest.raises(UnsignedAnswerError):
        check(404, b"", {})


def evidence() -> dict[str, Any]:
    nonce = new_nonce()
    key = AnswerKey(NODE.node_id, NODE.public_key)
    answer = key.check("POST", "/shards/has", BODY, nonce, 200, ANSWER, signed(nonce))
    return evidence_json(answer, BODY, ANSWER)


def test_evidence_round_trip_and_tampering() -> None:
    doc = evidence()
    answer, request, body = open_evidence(doc)
    assert (request, body, answer.node_id) == (BODY, ANSWER, NODE.node_id)
    other = NodeIdentity(SigningKey(bytes(32)))
    cases: list[tuple[Any, str]] = [
        ([], "not a JSON object"),
        ({**doc, "format": "v0"}, "format"),
        ({**doc, "answer": base64.b64encode(b"{}").decode()}, "does not verify"),
        ({**doc, "request": base64.b64encode(b"{}").decode()}, "does not verify"),
        ({**doc, "status": 404}, "does not verify"),
        ({**doc, "nonce": new_nonce()}, "does not verify"),
        ({**doc, "node_key": other.public_key}, "is the key of"),
        ({**doc, "node": other.node_id, "node_key": other.public_key}, "does not verify"),
        ({**doc, "node_key": base64.b64encode(bytes(31)).decode()}, "32 bytes"),
        ({**doc, "nonce": "XYZ"}, "nonce"),
        ({**doc, "status": True}, "status"),
        ({**doc, "answer": "%%%"}, "not base64"),
        ({k: v for k, v in doc.items() if k != "signature"}, "signature"),
    ]
    for bad, why in cases:
        with pytest.raises(EvidenceError, match=why):
            open_evidence(bad)

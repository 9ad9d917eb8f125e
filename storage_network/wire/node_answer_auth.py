"""Answers signed by the node: who answers at a node's URL must hold the node's key.

A gateway acts on some answers without data it can check: that a node holds
shards (``POST /shards/has``), that it holds no record under a key (a 404 of
``GET /records/<key>``), and its proof-of-storage answers (``POST /proofs``,
whose failures count against the node).  A node with an ed25519 key
(``nixshard node --key``; its id is ``node_id_for_key`` of the public key, see
:mod:`storage_network.network_map.node_id`) signs each of these answers, so
whoever answers at its URL without its key is caught, and a failed proof is
signed evidence against the node.

The client picks a fresh nonce per request and sends it::

    X-Nixshard-Answer-Nonce: <32 lowercase hex digits: 16 random bytes>

and the node answers with::

    X-Nixshard-Node-Signature: <base64 of a 64-byte ed25519 signature>

over :func:`answer_message`, which binds (one item a line)::

    nixshard-node-answer-v1         domain separation (no write signature,
                                     record or map signature starts so)
    <node id>                        the node the client meant to ask
    <METHOD>                         POST, GET
    <path>                           the route path: /shards/has, /records/<key>,
                                     /proofs (no URL prefix, no query)
    <sha256 hex of the request body> (of nothing for a GET)
    <nonce>                          the client's, so an answer cannot be
                                     replayed for another request
    <status>                         200, 404
    <sha256 hex of the answer body>

A node signs only when the request carries a well-formed nonce and the node
has a key; a client checks only answers of nodes whose network entry has a
``public_key`` (:attr:`storage_network.config.NodeInfo.public_key`), so
networks without node keys work as before.  Record and shard bodies need no
node signature: they are checked against signed metadata.

A signed answer kept as evidence (:func:`evidence_json`) carries the request
and answer bodies, so anyone holding it recomputes the digests, checks the
signature with the node's key, and re-checks what the node answered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from storage_network.errors import MapError, NodeAnswerError, StorageNetworkError
from storage_network.network_map.node_id import decode_node_key, node_id_for_key

ANSWER_FORMAT = "nixshard-node-answer-v1"
NONCE_HEADER = "X-Nixshard-Answer-Nonce"
SIGNATURE_HEADER = "X-Nixshard-Node-Signature"
NONCE_BYTES = 16
SIGNATURE_BYTES = 64
MAX_SIGNATURE_HEADER_CHARS = 200
_NONCE_RE = re.compile(r"\A[0-9a-f]{32}\Z")


class UnsignedAnswerError(NodeAnswerError):
    """A node's answer lacks a valid signature by the key its network entry names:
    whoever answered does not hold the node's key (or replayed another answer)."""


class EvidenceError(StorageNetworkError):
    """A signed answer kept as evidence is malformed, or does not verify."""


def answer_message(node_id: str, method: str, path: str, request_sha256: bytes, nonce: str,
                   status: int, answer_sha256: bytes) -> bytes:
    """The bytes a node signs for one answer (format in the module docstring)."""
    return (f"{ANSWER_FORMAT}\n{node_id}\n{method.upper()}\n{path}\n{request_sha256.hex()}\n"
            f"{nonce}\n{status}\n{answer_sha256.hex()}").encode()


def new_nonce() -> str:
    """A fresh nonce: 16 random bytes as 32 lowercase hex digits."""
    return secrets.token_hex(NONCE_BYTES)


def request_nonce(headers: Mapping[str, str]) -> str | None:
    """The well-formed nonce of a request's :data:`NONCE_HEADER`, else None (then the
    node does not sign: nobody asked it to, or the nonce is malformed)."""
    nonce = headers.get(NONCE_HEADER)
    return nonce if nonce is not None and _NONCE_RE.match(nonce) else None


def sign_answer(signing_key: SigningKey, node_id: str, method: str, path: str,
                request_sha256: bytes, request_headers: Mapping[str, str], status: int,
                answer: bytes) -> dict[str, str]:
    """The headers that sign one answer of node ``node_id``: ``{SIGNATURE_HEADER: ...}``,
    or ``{}`` when the request carries no well-formed nonce.

    Args:
        request_sha256: SHA-256 of the request body (32 bytes; of ``b""`` for a GET).
        answer: the exact answer body that will be sent.
    """
    nonce = request_nonce(request_headers)
    if nonce is None:
        return {}
    message = answer_message(node_id, method, path, request_sha256, nonce, status,
                             hashlib.sha256(answer).digest())
    return {SIGNATURE_HEADER: base64.b64encode(signing_key.sign(message).signature).decode()}


@dataclass(frozen=True)
class SignedAnswer:
    """One answer and its signature, as checked (everything :func:`answer_message` binds).

    Attributes:
        node_id: the node the answer is from.
        public_key: the node's 32-byte ed25519 public key.
        method, path: the request (path as in :func:`answer_message`).
        request_sha256, answer_sha256: 32-byte digests of the bodies.
        nonce: the client's nonce (32 hex digits).
        status: the HTTP status answered.
        signature: the 64-byte ed25519 signature.
    """

    node_id: str
    public_key: bytes
    method: str
    path: str
    request_sha256: bytes
    nonce: str
    status: int
    answer_sha256: bytes
    signature: bytes

    def message(self) -> bytes:
        """The signed bytes."""
        return answer_message(self.node_id, self.method, self.path, self.request_sha256,
                              self.nonce, self.status, self.answer_sha256)

    def valid(self) -> bool:
        """True when the signature verifies under :attr:`public_key`."""
        try:
            VerifyKey(self.public_key).verify(self.message(), self.signature)
        except (BadSignatureError, ValueError):
            return False
        return True


class AnswerKey:
    """The key a node's answers must be signed with, from its network entry.

    Args:
        node_id: the node's id.
        public_key: its ``public_key`` (base64 of 32 bytes).  A key that is malformed,
            or whose node id is not ``node_id``, is kept as the reason every answer
            fails: the node cannot be told from an impostor then.
    """

    def __init__(self, node_id: str, public_key: str) -> None:
        self.node_id = node_id
        self.raw: bytes | None = None
        self.problem: str | None = None
        try:
            raw = decode_node_key(public_key)
        except MapError as exc:
            self.problem = f"its public_key is unusable: {exc}"
            return
        derived = node_id_for_key(raw)
        if derived != node_id:
            self.problem = f"its public_key is the key of node {derived}, not of {node_id}"
            return
        self.raw = raw

    def check(self, method: str, path: str, request_body: bytes, nonce: str, status: int,
              answer: bytes, headers: Mapping[str, str]) -> SignedAnswer:
        """Check the signature of one answer.

        Args:
            request_body: the body sent (``b""`` for a GET).
            nonce: the nonce sent in :data:`NONCE_HEADER`.
            answer: the answer body as received.
            headers: the answer's headers.

        Raises:
            UnsignedAnswerError: no signature header, a malformed one, or one that does
                not verify over this request, nonce, status and answer.
        """
        what = f"node {self.node_id}: {method} {path}"
        refusal = f"{what}: answer not signed by node {self.node_id}'s key"
        if self.raw is None:
            raise UnsignedAnswerError(f"{refusal} ({self.problem})")
        text = headers.get(SIGNATURE_HEADER)
        if text is None:
            raise UnsignedAnswerError(f"{refusal} (no {SIGNATURE_HEADER} header)")
        signature = _decode_signature(text[:MAX_SIGNATURE_HEADER_CHARS])
        if signature is None:
            raise UnsignedAnswerError(f"{refusal} (malformed {SIGNATURE_HEADER} "
                                      f"{text[:40]!r})")
        signed = SignedAnswer(self.node_id, self.raw, method, path,
                              hashlib.sha256(request_body).digest(), nonce, status,
                              hashlib.sha256(answer).digest(), signature)
        if not signed.valid():
            raise UnsignedAnswerError(f"{refusal} (the signature does not verify: another "
                                      f"key, or an answer to another request)")
        return signed


def _decode_signature(text: str) -> bytes | None:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == SIGNATURE_BYTES else None


class AnswerCheck:
    """One request whose answers of some statuses must be signed by the node: the nonce
    to send (:attr:`headers`), and the check the client runs on the answer
    (calling the object; the checked answer is kept in :attr:`signed`).

    Args:
        key: the node's key.
        method, path: the request (path as in :func:`answer_message`).
        request_body: the body that will be sent (``b""`` for a GET).
        statuses: the statuses whose answers must be signed (others pass unchecked).
    """

    def __init__(self, key: AnswerKey, method: str, path: str, request_body: bytes,
                 statuses: Collection[int]) -> None:
        self.key, self.method, self.path = key, method, path
        self.request_body = request_body
        self.statuses = frozenset(statuses)
        self.nonce = new_nonce()
        self.signed: SignedAnswer | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The request header carrying the nonce."""
        return {NONCE_HEADER: self.nonce}

    def __call__(self, status: int, answer: bytes, headers: Mapping[str, str]) -> None:
        """Check the answer when its status is one of :attr:`statuses`.

        Raises:
            UnsignedAnswerError: see :meth:`AnswerKey.check`.
        """
        if status in self.statuses:
            self.signed = self.key.check(self.method, self.path, self.request_body,
                                         self.nonce, status, answer, headers)


def answer_check(node_id: str, public_key: str, method: str, path: str, request_body: bytes,
                 statuses: Collection[int]) -> AnswerCheck | None:
    """The :class:`AnswerCheck` of one request to a node whose network entry names
    ``public_key``; None when it names none (a network without node keys, a bucket:
    nothing is checked)."""
    if not public_key:
        return None
    return AnswerCheck(AnswerKey(node_id, public_key), method, path, request_body, statuses)


def evidence_json(signed: SignedAnswer, request_body: bytes, answer: bytes) -> dict[str, Any]:
    """A signed answer as JSON-ready values anyone can check (:func:`open_evidence`)::

        {"format": "nixshard-node-answer-v1", "node": id, "node_key": base64,
         "method": "POST", "path": "/proofs", "request": base64 body,
         "nonce": hex, "status": 200, "answer": base64 body, "signature": base64}
    """
    return {"format": ANSWER_FORMAT, "node": signed.node_id,
            "node_key": base64.b64encode(signed.public_key).decode(),
            "method": signed.method, "path": signed.path,
            "request": base64.b64encode(request_body).decode(), "nonce": signed.nonce,
            "status": signed.status, "answer": base64.b64encode(answer).decode(),
            "signature": base64.b64encode(signed.signature).decode()}


def _field(doc: Mapping[str, Any], name: str, kind: type) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise EvidenceError(f"signed answer: {name!r} is missing or not a {kind.__name__}")
    return value


def _b64(doc: Mapping[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(_field(doc, name, str), validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceError(f"signed answer: {name!r} is not base64") from None


def open_evidence(doc: Any) -> tuple[SignedAnswer, bytes, bytes]:
    """Check a signed answer of :func:`evidence_json`: the key is the node's (its id
    derives from it), and the signature verifies over the bodies given.

    Returns:
        ``(signed answer, request body, answer body)``.

    Raises:
        EvidenceError: malformed, another format, a key that is not the node's, or a
            signature that does not verify.
    """
    if not isinstance(doc, dict):
        raise EvidenceError("signed answer: not a JSON object")
    if doc.get("format") != ANSWER_FORMAT:
        raise EvidenceError(f"signed answer: format is not {ANSWER_FORMAT!r}")
    node_id = _field(doc, "node", str)
    key = _b64(doc, "node_key")
    try:
        derived = node_id_for_key(key)
    except MapError as exc:
        raise EvidenceError(f"signed answer of node {node_id[:80]!r}: {exc}") from None
    if derived != node_id:
        raise EvidenceError(f"signed answer: node_key is the key of {derived}, "
                            f"not of {node_id[:80]!r}")
    nonce = _field(doc, "nonce", str)
    if not _NONCE_RE.match(nonce):
        raise EvidenceError("signed answer: nonce is not 32 lowercase hex digits")
    request, answer = _b64(doc, "request"), _b64(doc, "answer")
    signed = SignedAnswer(node_id, key, _field(doc, "method", str),
                          _field(doc, "path", str), hashlib.sha256(request).digest(),
                          nonce, _field(doc, "status", int),
                          hashlib.sha256(answer).digest(), _b64(doc, "signature"))
    if not signed.valid():
        raise EvidenceError(f"signed answer of node {node_id}: the signature does not "
                            f"verify under its key")
    return signed, request, answer

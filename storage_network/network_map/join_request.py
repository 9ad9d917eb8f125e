"""A join request: what a node operator hands to the maintainers to be put in the map.

JSON (at most :data:`MAX_JOIN_REQUEST_BYTES` bytes; ``nixshard node join-request``
prints it, ``nixshard map propose --add-node FILE`` reads it)::

    {"format": "nixshard-join-request/1",
     "id": "node-...",              # node_id_for_key(public_key)
     "public_key": "BASE64",        # the node's ed25519 key, 32 bytes
     "url": "https://node.example:9001", "operator": "acme", "zone": "fra1",
     "weight": 1.0,
     "signature": "BASE64"}         # by the node's key, see below

The signature is ed25519 by the node's own key over
``b"nixshard-join-request/1\\n"`` + SHA-256 of the canonical bytes
(:func:`~.document.canonical_bytes`) of the object without ``signature``:
it shows that whoever hands in the request holds the node's key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from storage_network.config import NodeInfo
from storage_network.errors import MapError
from storage_network.nodes.registry import url_error

from .document import canonical_bytes
from .node_id import decode_node_key, node_id_for_key

FORMAT = "nixshard-join-request/1"
DOMAIN = b"nixshard-join-request/1\n"
MAX_JOIN_REQUEST_BYTES = 64 * 1024
_KEYS = frozenset({"format", "id", "public_key", "url", "operator", "zone", "weight",
                   "signature"})


def _message(fields: dict[str, Any]) -> bytes:
    return DOMAIN + hashlib.sha256(canonical_bytes(fields)).digest()


def make_join_request(key: SigningKey, url: str, operator: str, zone: str = "",
                      weight: float = 1.0) -> dict[str, Any]:
    """The signed join request of the node with ``key`` at ``url``.

    Raises:
        MapError: ``url`` is not ``http(s)://host:port``, ``operator`` is empty,
            ``weight`` is not a positive finite number.
    """
    public = bytes(key.verify_key)
    fields: dict[str, Any] = {
        "format": FORMAT, "id": node_id_for_key(public),
        "public_key": base64.b64encode(public).decode(), "url": url.rstrip("/"),
        "operator": operator, "zone": zone, "weight": float(weight)}
    _check_fields(fields)
    fields["signature"] = base64.b64encode(key.sign(_message(fields)).signature).decode()
    return fields


def _check_fields(fields: dict[str, Any]) -> None:
    for name in ("id", "public_key", "url", "operator", "zone"):
        if not isinstance(fields[name], str):
            raise MapError(f"join request: {name!r} must be a string")
    weight = fields["weight"]
    if (isinstance(weight, bool) or not isinstance(weight, (int, float))
            or not (math.isfinite(weight) and weight > 0)):
        raise MapError(f"join request: weight must be a positive finite number, got {weight!r}")
    why = url_error(fields["url"])
    if why is None and not fields["url"].lower().startswith(("http://", "https://")):
        why = "is not http(s)://host:port"
    if why is not None:
        raise MapError(f"join request: url {fields['url'][:80]!r} {why}")
    if not fields["operator"]:
        raise MapError("join request: the operator must be named")


def parse_join_request(data: bytes) -> NodeInfo:
    """The node entry of a join request, after checking its form and its signature.

    Raises:
        MapError: over :data:`MAX_JOIN_REQUEST_BYTES`, not JSON of the form above, an
            id that is not its key's, or a signature that does not verify.
    """
    if len(data) > MAX_JOIN_REQUEST_BYTES:
        raise MapError(f"join request larger than {MAX_JOIN_REQUEST_BYTES} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MapError("join request is not UTF-8 JSON") from None
    if not isinstance(doc, dict) or set(doc) != _KEYS or doc["format"] != FORMAT:
        raise MapError(f"join request must be a {FORMAT} object with the keys {sorted(_KEYS)}")
    signature = doc.pop("signature")
    _check_fields(doc)
    public = decode_node_key(doc["public_key"])
    if doc["id"] != node_id_for_key(public):
        raise MapError(f"join request: id {doc['id'][:80]!r} is not the id of its public key "
                       f"({node_id_for_key(public)!r})")
    try:
        raw = base64.b64decode(signature if isinstance(signature, str) else "", validate=True)
        VerifyKey(public).verify(_message(doc), raw)
    except (binascii.Error, BadSignatureError, ValueError):
        raise MapError(f"join request of {doc['id']}: the signature by its node key does "
                       "not verify") from None
    return NodeInfo(doc["id"], doc["url"], operator=doc["operator"], zone=doc["zone"],
                    weight=float(doc["weight"]), public_key=doc["public_key"])

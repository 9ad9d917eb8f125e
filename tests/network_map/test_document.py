"""The map document: canonical bytes, the network it describes, and refusals of bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nacl.signing import SigningKey

from nixshard.localnet import new_publisher
from storage_network.config import NODE_ID_RE, init_network
from storage_network.errors import MapError
from storage_network.network_map import (
    MAX_MAP_BYTES,
    SignedMap,
    canonical_bytes,
    document_from_network,
    node_id_for_key,
    parse_document,
    parse_signed_map,
)

from .maps import first_epoch, maintainers, node_entries, sign

URLS = ["http://127.0.0.1:9101", "http://127.0.0.1:9102", "http://127.0.0.1:9103"]


@pytest.fixture
def signed() -> SignedMap:
    keys = maintainers("m", 3)
    _, nodes = node_entries(URLS)
    return sign(first_epoch(nodes, keys), keys[0], keys[1])


def doc_json(signed: SignedMap) -> dict[str, Any]:
    return signed.document.to_json()


def test_node_id_derives_from_key() -> None:
    key = bytes(SigningKey.generate().verify_key)
    node_id = node_id_for_key(key)
    assert NODE_ID_RE.fullmatch(node_id) and node_id.startswith("node-")
    assert len(node_id) == 31 and node_id_for_key(key) == node_id
    assert node_id_for_key(bytes(SigningKey.generate().verify_key)) != node_id
    with pytest.raises(MapError, match="32 bytes"):
        node_id_for_key(b"short")


def test_round_trip_is_lossless(signed: SignedMap) -> None:
    again = parse_signed_map(signed.to_bytes())
    assert again == signed
    assert again.document.canonical() == signed.document.canonical()
    network = again.network
    assert (network.k, network.m, len(network.nodes)) == (2, 1, 3)
    assert network.maintainers == frozenset({"m-1", "m-2", "m-3"})
    assert network.may_delete("m-1") and not network.may_delete("pub-1")
    assert network.quotas == {"pub-1": 10**9}
    assert {n.operator for n in network.nodes} == {"op-0", "op-1"}


def test_canonical_bytes_are_sorted_compact_ascii(signed: SignedMap) -> None:
    data = signed.document.canonical()
    assert data == canonical_bytes(json.loads(data))
    assert b" " not in data and b"\n" not in data
    assert data.startswith(b'{"chunking":{"avg_size":')
    assert b'"weight":1.0' in data


def test_float_weight_is_canonical(signed: SignedMap) -> None:
    doc = doc_json(signed)
    doc["nodes"][0]["weight"] = 2.5
    assert parse_document(doc).nodes[0].weight == 2.5
    doc["nodes"][0]["weight"] = 3  # an integer reads back as 3.0: not its canonical form
    with pytest.raises(MapError, match="canonical"):
        parse_document(doc)


def test_node_id_must_match_its_key(signed: SignedMap) -> None:
    doc = doc_json(signed)
    doc["nodes"][0]["id"] = doc["nodes"][1]["id"]
    with pytest.raises(MapError, match="does not match its public key"):
        parse_document(doc)
    doc = doc_json(signed)
    doc["nodes"][0]["id"] = "node-1"
    with pytest.raises(MapError, match="does not match its public key"):
        parse_document(doc)


def test_http_node_needs_a_key_bucket_does_not(signed: SignedMap) -> None:
    doc = doc_json(signed)
    doc["nodes"][0]["public_key"] = ""
    with pytest.raises(MapError, match="no public_key"):
        parse_document(doc)
    doc["nodes"][0].update(id="bucket-1", url="s3://bucket-1/x?endpoint=http://127.0.0.1:1")
    assert parse_document(doc).nodes[0].id == "bucket-1"


@pytest.mark.parametrize(("change", "reason"), [
    (lambda d: d.pop("threshold"), "missing keys"),
    (lambda d: d.update(extra=1), "unknown keys"),
    (lambda d: d.update(epoch="1"), "'epoch' must be a int"),
    (lambda d: d.update(epoch=True), "'epoch' must be a int"),
    (lambda d: d.update(epoch=0), "epoch must be 1..999999999999"),
    (lambda d: d.update(epoch=10**4000), "epoch must be 1..999999999999, got 1000000"),
    (lambda d: d.update(previous="ab"), "epoch 1 has no previous"),
    (lambda d: d.update(threshold=4), "threshold 4 must be 1..3"),
    (lambda d: d.update(maintainers=[]), "lists no maintainer"),
    (lambda d: d.update(format="nixshard-network-map/9"), "format"),
    (lambda d: d.update(k=5), "k \\+ m = 6 shards need 6 distinct nodes"),
    (lambda d: d["nodes"][0].update(state="gone"), "state 'gone'"),
    (lambda d: d["nodes"][0].update(weight=-1.0), "positive finite"),
    (lambda d: d["nodes"][0].update(url="ftp://x"), "no known scheme"),
    (lambda d: d["nodes"][0].update(public_key="!!"), "not base64"),
    (lambda d: d["nodes"].append(dict(d["nodes"][0])), "listed twice"),
    (lambda d: d["publishers"][0].update(quota_bytes=-1), "quota_bytes"),
    (lambda d: d["maintainers"].append(d["maintainers"][0]), "listed twice"),
    (lambda d: d["maintainers"].append("broken"), "name:base64"),
    (lambda d: d.update(nodes={"a": 1}), "'nodes' must be a list"),
])
def test_malformed_documents_are_refused(signed: SignedMap, change: Any, reason: str) -> None:
    doc = doc_json(signed)
    change(doc)
    with pytest.raises(MapError, match=reason):
        parse_document(doc)


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[]", "exactly the keys"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply|not UTF-8 JSON"),
    (b'{"document": {}, "signatures": {}}', "list of at most"),
    (b'{"document": {}, "signatures": [{"key": "a", "signature": "AAAA"}]}', "64 bytes|is 3"),
])
def test_malformed_files_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(MapError, match=reason):
        parse_signed_map(data)


def test_oversized_file_is_refused(signed: SignedMap) -> None:
    data = signed.to_bytes()
    with pytest.raises(MapError, match="exceeds the limit"):
        parse_signed_map(data + b" " * (MAX_MAP_BYTES - len(data) + 1))
    assert parse_signed_map(data + b" " * (MAX_MAP_BYTES - len(data))) == signed


def test_duplicate_signature_entries_are_refused(signed: SignedMap) -> None:
    doc = json.loads(signed.to_bytes())
    doc["signatures"].append(doc["signatures"][0])
    with pytest.raises(MapError, match="twice"):
        parse_signed_map(json.dumps(doc).encode())


def test_first_epoch_from_a_network_file() -> None:
    keys = maintainers("m", 2)
    ids, nodes = node_entries(URLS)
    network = init_network(URLS, 2, 1, [new_publisher("pub-1")[0].public],
                           maintainers=[k.public for k in keys])
    with pytest.raises(MapError, match="no public_key"):
        document_from_network(network, threshold=2)
    keyed = network.__class__(**{**network.__dict__, "nodes": nodes})
    doc = document_from_network(keyed, threshold=2)
    assert (doc.epoch, doc.previous, doc.threshold) == (1, "", 2)
    assert [k.name for k in doc.maintainers] == ["m-1", "m-2"]
    assert [k.name for k in doc.publishers] == ["pub-1"]
    assert doc.to_network().publishers.keys() == network.publishers.keys()
    no_maintainers = init_network(URLS, 2, 1, [new_publisher("pub-1")[0].public])
    with pytest.raises(MapError, match="no `maintainers`"):
        document_from_network(no_maintainers, threshold=1)


"""Captured signed writes replayed against real node processes (docs/consistency.md, "Signed
writes cannot be replayed"): to the same node (the nonce is used), to another node (bound to
one node id), after a signed delete, after a restart (the ledger file); and an older record
never overwrites a newer one."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from nixshard.localnet import NodeProcess, start_nodes, stop_all
from storage_network.wire.shard_batch import encode_put_batch
from storage_network.wire.write_auth import Publisher

from .samples import T0, chunk_refs, record, record_key, signed_headers, stripe


@dataclass(frozen=True)
class Captured:
    """A signed write as it went over the wire (what an eavesdropper keeps)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def send(self, node: NodeProcess) -> httpx.Response:
        return httpx.request(self.method, node.url + self.path, headers=self.headers,
                             content=self.body, timeout=30)


def capture(publisher: Publisher, method: str, path: str, body: bytes = b"",
            node_id: str = "node-1") -> Captured:
    return Captured(method, path, signed_headers(publisher, method, path, body,
                                                 node_id=node_id), body)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory,
          publisher: Publisher) -> Iterator[list[NodeProcess]]:
    started = start_nodes(tmp_path_factory.mktemp("replay"), 2, [publisher.public.text()])
    try:
        yield started
    finally:
        stop_all(started)


def assert_replayed(resp: httpx.Response, captured: Captured) -> None:
    assert resp.status_code == 403, resp.text
    nonce = captured.headers["X-Nixshard-Nonce"]
    assert resp.text == f"error: replayed write: nonce {nonce} was already used"


def assert_bound_elsewhere(resp: httpx.Response, other: NodeProcess) -> None:
    assert resp.status_code == 403, resp.text
    assert resp.text.startswith(f"error: write is signed for node 'node-1', this is node "
                                f"'{other.node_id}'")


def shard_held(node: NodeProcess, sid: str) -> bool:
    return httpx.get(f"{node.url}/shards/{sid}").status_code == 200


def record_held(node: NodeProcess, key: str) -> bytes | None:
    resp = httpx.get(f"{node.url}/records/{key}")
    return resp.content if resp.status_code == 200 else None


@pytest.mark.parametrize("kind", ["shard", "batch", "record", "touch"])
def test_a_captured_write_is_refused_again_and_elsewhere(
        nodes: list[NodeProcess], publisher: Publisher, kind: str) -> None:
    first, second = nodes
    shards = stripe(n=2)
    key = record_key()
    if kind == "shard":
        sid, body = shards[0]
        captured = capture(publisher, "PUT", f"/shards/{sid}", body)
    elif kind == "batch":
        captured = capture(publisher, "POST", "/shards/batch-put", encode_put_batch(shards))
    elif kind == "record":
        captured = capture(publisher, "PUT", f"/records/{key}", record(publisher, key))
    else:
        body = json.dumps({"ids": [shards[0][0]], "touch": True}).encode()
        captured = capture(publisher, "POST", "/shards/has", body)
    assert captured.send(first).status_code in (200, 201)
    assert_replayed(captured.send(first), captured)
    assert_bound_elsewhere(captured.send(second), second)
    assert not shard_held(second, shards[0][0]) and record_held(second, key) is None


@pytest.mark.parametrize("kind", ["shard", "record"])
def test_a_captured_delete_is_refused_again_and_elsewhere(
        nodes: list[NodeProcess], publisher: Publisher, kind: str) -> None:
    first, second = nodes
    (sid, body), *_ = stripe(n=1)
    key = record_key()
    sealed = record(publisher, key)
    for node in nodes:  # both hold the object, each written by its own signed PUT
        if kind == "shard":
            put = capture(publisher, "PUT", f"/shards/{sid}", body, node_id=node.node_id)
        else:
            put = capture(publisher, "PUT", f"/records/{key}", sealed, node_id=node.node_id)
        assert put.send(node).status_code == 201
    if kind == "shard":
        delete = capture(publisher, "DELETE", f"/shards/{sid}?before={time.time() + 60:.3f}")
    else:
        delete = capture(publisher, "DELETE",
                         f"/records/{key}?sha256={hashlib.sha256(sealed).hexdigest()}")
    assert delete.send(first).status_code == 204
    assert_replayed(delete.send(first), delete)
    assert_bound_elsewhere(delete.send(second), second)
    if kind == "shard":
        assert shard_held(second, sid)
    else:
        assert record_held(second, key) == sealed


@pytest.mark.parametrize("kind", ["shard", "record"])
def test_a_captured_put_replayed_after_a_signed_delete_is_refused(
        nodes: list[NodeProcess], publisher: Publisher, kind: str) -> None:
    first, _ = nodes
    (sid, body), *_ = stripe(n=1)
    key = record_key()
    sealed = record(publisher, key)
    if kind == "shard":
        put = capture(publisher, "PUT", f"/shards/{sid}", body)
        delete = capture(publisher, "DELETE", f"/shards/{sid}?before={time.time() + 60:.3f}")
    else:
        put = capture(publisher, "PUT", f"/records/{key}", sealed)
        delete = capture(publisher, "DELETE",
                         f"/records/{key}?sha256={hashlib.sha256(sealed).hexdigest()}")
    assert put.send(first).status_code == 201
    assert delete.send(first).status_code == 204
    assert_replayed(put.send(first), put)
    assert not shard_held(first, sid) and record_held(first, key) is None


def test_a_replayed_older_record_never_overwrites_a_newer_one(
        nodes: list[NodeProcess], publisher: Publisher) -> None:
    first, _ = nodes
    key, refs = record_key(), chunk_refs()
    older = record(publisher, key, refs=refs, created=T0)
    newer = record(publisher, key, refs=refs, note="-2", created=T0 + 60)
    captured = capture(publisher, "PUT", f"/records/{key}", older)
    assert captured.send(first).status_code == 201
    assert capture(publisher, "PUT", f"/records/{key}", newer).send(first).status_code == 200
    assert_replayed(captured.send(first), captured)
    # the older envelope signed afresh (a stale node's read repair, say): still refused
    resp = capture(publisher, "PUT", f"/records/{key}", older).send(first)
    assert resp.status_code == 409
    assert resp.text.startswith(f"error: holds a newer version of record {key} "
                                f"(created {T0 + 60}")
    assert record_held(first, key) == newer


def test_a_replay_after_a_restart_is_still_refused(tmp_path_factory: pytest.TempPathFactory,
                                                   publisher: Publisher) -> None:
    (sid, body), *_ = stripe(n=1)
    key = record_key()
    put_shard = capture(publisher, "PUT", f"/shards/{sid}", body)
    put_record = capture(publisher, "PUT", f"/records/{key}", record(publisher, key))
    node = NodeProcess(tmp_path_factory.mktemp("restart") / "data", [publisher.public.text()])
    with node:
        assert put_shard.send(node).status_code == 201
        assert put_record.send(node).status_code == 201
        delete = capture(publisher, "DELETE", f"/shards/{sid}?before={time.time() + 60:.3f}")
        assert delete.send(node).status_code == 204
        node.restart()
        assert_replayed(put_shard.send(node), put_shard)
        assert_replayed(put_record.send(node), put_record)
        assert_replayed(delete.send(node), delete)
        node.kill()  # no clean shutdown: the ledger is written as nonces are used
        node.start().wait_ready()
        assert_replayed(put_shard.send(node), put_shard)
        assert not shard_held(node, sid)

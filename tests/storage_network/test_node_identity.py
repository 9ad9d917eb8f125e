"""Node identity against real node processes: a node with a key signs its ``has``,
record-absence and proof answers (storage_network.wire.node_answer_auth); whoever
answers at its URL without its key is caught, benched, and not believed."""

from __future__ import annotations

import base64
import json
import random
import secrets
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from nacl.signing import SigningKey

from nixshard.audit_cli import format_report
from storage_network.client import NetworkClient
from storage_network.config import NodeInfo
from storage_network.nodes.http import NodeClient
from storage_network.read.locate import locate_shards
from storage_network.read.record_lookup import fetch_record
from storage_network.upkeep.audit import audit_network
from storage_network.upkeep.audit_findings import load_findings, verify_evidence
from storage_network.wire.manifest import Manifest
from storage_network.wire.node_answer_auth import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    EvidenceError,
    UnsignedAnswerError,
    new_nonce,
)
from storage_network.wire.stripe import shard_id
from storage_network.write.publish import publish_record, store_payload
from storage_node.identity import NodeIdentity
from tests.support.reads import read_back
from tests.support.records import payload, record_key
from tests.support.servers import serve_app
from tests.support.shards import flip_tail, shard_files

from .keyed_nodes import KeyedNodes, copy_data, impostor_server, keyed_nodes

ABSENT_KEY = "0" * 32


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[KeyedNodes]:
    """Six started nodes with keys, of this test alone."""
    with keyed_nodes(tmp_path) as net:
        yield net


async def publish(net: NetworkClient, keyed: KeyedNodes, seed: int) -> tuple[str, bytes, Manifest]:
    data = payload(seed, 120_000)
    manifest, _ = await store_payload(net, keyed.publisher, [data])
    key = record_key(seed)
    await publish_record(net, keyed.publisher, key, b"meta", manifest)
    return key, data, manifest


def all_ids(manifest: Manifest) -> list[str]:
    """Every shard id of ``manifest``."""
    return [shard_id(ref.root, i) for ref in manifest.chunks for i in range(manifest.n)]


async def test_signed_answers_verify(keyed: KeyedNodes) -> None:
    async with NetworkClient(keyed.network, timeout=10.0) as net:
        key, data, manifest = await publish(net, keyed, 1)
        node = net.nodes[keyed.identities[0].node_id]
        assert isinstance(node, NodeClient)
        every = all_ids(manifest)
        held = await node.has(every)
        assert held and held < set(every)
        assert await node.get_record(ABSENT_KEY) is None  # a signed 404
        nonce = secrets.token_bytes(32)
        asked = sorted(held)[:3]
        await node.prove(nonce, asked)
        kept = node.signed_proof(nonce)
        assert kept is not None and kept[0].valid() and kept[0].node_id == node.id
        assert node.signed_proof(nonce) is None  # taken once
        assert await read_back(net, manifest) == data
        assert (await fetch_record(net, key)).manifest.chunks == manifest.chunks
        assert all(s.failures == 0 for s in net.health.statuses(net.nodes))


async def test_node_process_with_another_key_is_caught(keyed: KeyedNodes,
                                                       tmp_path: Path) -> None:
    """The genuine node's data, served at its URL by a node holding another key: even
    true claims are refused, the impostor is benched, reads go on from the others."""
    async with NetworkClient(keyed.network, timeout=10.0) as net:
        key, data, manifest = await publish(net, keyed, 2)
    victim = keyed.identities[1].node_id
    keyed.nodes[1].stop()
    copy = copy_data(keyed, 1, tmp_path / "impostor-data")
    impostor = keyed.process(1, NodeIdentity(SigningKey.generate()), copy)
    keyed.nodes[1] = impostor
    impostor.start().wait_ready()

    async with aiohttp.ClientSession() as session:  # it holds the data, and says so
        assert await NodeClient(NodeInfo(victim, impostor.url), session).has(all_ids(manifest))
    async with NetworkClient(keyed.network, timeout=10.0) as net:
        with pytest.raises(UnsignedAnswerError, match=f"answer not signed by node {victim}'s key"):
            await net.nodes[victim].has(all_ids(manifest))
        with pytest.raises(UnsignedAnswerError, match="not signed"):
            await net.nodes[victim].get_record(ABSENT_KEY)
        with pytest.raises(UnsignedAnswerError):
            await net.nodes[victim].prove(secrets.token_bytes(32), all_ids(manifest)[:2])

    async with NetworkClient(keyed.network, timeout=10.0) as net:
        found = await locate_shards(net, manifest.chunks, manifest.k, manifest.m)
        assert victim in found.unreachable
        assert all(victim not in found.holding(c) for c in range(len(manifest.chunks)))
        status = net.health.status(victim)
        assert status.benched and "not signed by node" in (status.reason or "")
        assert await read_back(net, manifest) == data
        assert (await fetch_record(net, key)).manifest.chunks == manifest.chunks


async def test_impostor_server_claims_are_not_used(keyed: KeyedNodes) -> None:
    """A small server at a node's URL that claims every shard and denies every record,
    signing with a key of its own: its claims and 404s are not used."""
    async with NetworkClient(keyed.network, timeout=10.0) as net:
        key, data, manifest = await publish(net, keyed, 3)
    victim_index = 2
    victim = keyed.identities[victim_index].node_id
    keyed.nodes[victim_index].stop()
    port = int(keyed.network.nodes[victim_index].url.rsplit(":", 1)[1])
    async with impostor_server(port, victim, SigningKey.generate()):
        async with NetworkClient(keyed.network, timeout=10.0) as net:
            found = await locate_shards(net, manifest.chunks, manifest.k, manifest.m)
            assert all(victim not in found.holding(c) for c in range(len(manifest.chunks)))
            assert "not signed by node" in found.unreachable[victim]
            assert (await fetch_record(net, key)).manifest.chunks == manifest.chunks
            assert await read_back(net, manifest) == data
            with pytest.raises(UnsignedAnswerError):
                await net.nodes[victim].get_record(key)
            assert net.health.status(victim).benched

        # the same server at a node of a network without node keys: believed, as before
        async with NetworkClient(keyed.without_keys(), timeout=10.0) as net:
            asked = all_ids(manifest)[:4]
            assert await net.nodes[victim].has(asked) == set(asked)
            assert await net.nodes[victim].get_record(key) is None


async def test_replayed_signed_answer_is_refused(keyed: KeyedNodes) -> None:
    """A genuine signed answer, replayed by someone else for another request (another
    nonce), does not pass."""
    genuine = keyed.network.nodes[0]
    async with NetworkClient(keyed.network, timeout=10.0) as net:
        _, _, manifest = await publish(net, keyed, 4)
    body = json.dumps({"ids": all_ids(manifest)}).encode()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{genuine.url}/shards/has", data=body,
                                headers={NONCE_HEADER: new_nonce(),
                                         "Content-Type": "application/json"}) as resp:
            captured, signature = await resp.read(), resp.headers[SIGNATURE_HEADER]

    async def replay(request: web.Request) -> web.Response:
        return web.Response(body=captured, content_type="application/json",
                            headers={SIGNATURE_HEADER: signature})

    app = web.Application()
    app.router.add_post("/shards/has", replay)
    async with serve_app(app) as url, aiohttp.ClientSession() as session:
        client = NodeClient(NodeInfo(genuine.id, url, public_key=genuine.public_key),
                            session, timeout=10.0)
        with pytest.raises(UnsignedAnswerError, match="does not verify"):
            await client.has(all_ids(manifest))
        await client.close()


async def test_failed_proof_is_signed_evidence(keyed: KeyedNodes, tmp_path: Path) -> None:
    async with NetworkClient(keyed.network, timeout=10.0) as net:
        await publish(net, keyed, 5)
    rotten = keyed.identities[3].node_id
    files = shard_files(keyed.root / rotten)
    assert files
    for path in files:
        flip_tail(path)
    async with NetworkClient(keyed.network, timeout=30.0) as net:
        report = await audit_network(net, deadline=30.0,
                                     rng=random.Random(1))
    row = {r.node_id: r for r in report.nodes}[rotten]
    assert row.verdict == "corrupt" and row.evidence
    doc = json.loads(json.dumps(report.to_json()))
    (item,) = [n for n in doc["nodes"] if n["node"] == rotten][0]["signed_evidence"][:1]
    node_id, failed = verify_evidence(item)
    assert node_id == rotten and failed and set(failed.values()) == {"corrupt"}
    assert set(failed) <= set(row.shards_in("corrupt"))
    assert all(not r.evidence for r in report.nodes if r.node_id != rotten)
    assert f"{rotten}: evidence signed by the node's key: " in format_report(report)
    written = tmp_path / "report.json"
    written.write_text(json.dumps(doc))  # repair still reads the report
    assert rotten in load_findings(written, [n.id for n in keyed.network.nodes]).suspects

    tampered = json.loads(json.dumps(item))
    answer = bytearray(base64.b64decode(tampered["signed_answer"]["answer"]))
    answer[-1] ^= 1
    tampered["signed_answer"]["answer"] = base64.b64encode(answer).decode()
    with pytest.raises(EvidenceError, match="does not verify"):
        verify_evidence(tampered)
    other = NodeIdentity(SigningKey.generate())
    forged = json.loads(json.dumps(item))
    forged["signed_answer"]["node_key"] = other.public_key
    with pytest.raises(EvidenceError, match="is the key of"):
        verify_evidence(forged)


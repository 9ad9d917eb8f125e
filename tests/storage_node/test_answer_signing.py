"""A node with a key signs its ``has``, record-404 and proof answers when asked
(storage_node.answer_signing, storage_network.wire.node_answer_auth)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from nacl.signing import SigningKey

from nixshard.localnet import NodeProcess
from storage_network.wire.node_answer_auth import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    AnswerKey,
    UnsignedAnswerError,
    new_nonce,
)
from storage_network.wire.write_auth import Publisher
from storage_node.app import create_app
from storage_node.config import NodeConfig
from storage_node.errors import ConfigError
from storage_node.identity import NodeIdentity

from .samples import record_key, signed_headers, stripe

Client = TestClient[web.Request, web.Application]
IDENTITY = NodeIdentity(SigningKey(bytes(range(32))))
OTHER = NodeIdentity(SigningKey(bytes(32)))


def key_of(identity: NodeIdentity) -> AnswerKey:
    return AnswerKey(identity.node_id, identity.public_key)


@pytest.fixture
async def keyed(tmp_path: Path, publisher: Publisher) -> AsyncIterator[Client]:
    """An in-process node with :data:`IDENTITY`'s key."""
    config = NodeConfig(tmp_path / "data", IDENTITY.node_id, {publisher.name: publisher.public},
                        identity=IDENTITY)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


async def ask(client: Client, method: str, path: str, body: bytes = b"",
              nonce: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json"} if body else {}
    if nonce is not None:
        headers[NONCE_HEADER] = nonce
    resp = await client.request(method, path, data=body or None, headers=headers)
    return resp.status, await resp.read(), dict(resp.headers)


async def test_has_404_and_proof_answers_are_signed(keyed: Client,
                                                    publisher: Publisher) -> None:
    shards = stripe(n=3, size=5000)
    for sid, shard in shards:
        headers = signed_headers(publisher, "PUT", f"/shards/{sid}", shard,
                                 node_id=IDENTITY.node_id)
        assert (await keyed.put(f"/shards/{sid}", data=shard, headers=headers)).status == 201
    ids = [sid for sid, _ in shards]
    key = key_of(IDENTITY)
    cases = [("POST", "/shards/has", json.dumps({"ids": ids}).encode(), 200),
             ("GET", f"/records/{record_key()}", b"", 404),
             ("POST", "/proofs", json.dumps({"nonce": "ab" * 32, "ids": ids}).encode(), 200)]
    for method, path, body, want in cases:
        nonce = new_nonce()
        status, answer, headers = await ask(keyed, method, path, body, nonce)
        assert status == want, answer
        signed = key.check(method, path, body, nonce, status, answer, headers)
        assert signed.valid() and signed.status == want
        with pytest.raises(UnsignedAnswerError, match="does not verify"):  # another request
            key.check(method, path, body, new_nonce(), status, answer, headers)
        with pytest.raises(UnsignedAnswerError, match="does not verify"):  # another answer
            key.check(method, path, body, nonce, status, answer + b" ", headers)
        with pytest.raises(UnsignedAnswerError, match="does not verify"):  # another body
            key.check(method, path, body + b" ", nonce, status, answer, headers)
        with pytest.raises(UnsignedAnswerError, match="does not verify"):  # another key
            key_of(OTHER).check(method, path, body, nonce, status, answer, headers)
    absent = record_key()
    status, answer, _ = await ask(keyed, "GET", f"/records/{absent}")
    assert (status, answer) == (404, f"error: no record {absent}".encode())  # as before


async def test_no_nonce_or_a_malformed_one_is_not_signed(keyed: Client) -> None:
    body = json.dumps({"ids": []}).encode()
    for nonce in (None, "", "AB" * 16, "ab" * 15, "ab" * 17, "zz" * 16):
        status, _, headers = await ask(keyed, "POST", "/shards/has", body, nonce)
        assert status == 200 and SIGNATURE_HEADER not in headers, nonce


async def test_node_without_key_signs_nothing(client: Client) -> None:
    status, answer, headers = await ask(client, "GET", f"/records/{record_key()}",
                                        nonce=new_nonce())
    assert status == 404 and SIGNATURE_HEADER not in headers
    with pytest.raises(UnsignedAnswerError, match="no X-Nixshard-Node-Signature"):
        key_of(IDENTITY).check("GET", f"/records/{record_key()}", b"", "0" * 32, 404,
                               answer, headers)


def test_node_id_must_be_the_keys(tmp_path: Path, publisher: Publisher) -> None:
    config = NodeConfig(tmp_path, "node-1", {publisher.name: publisher.public},
                        identity=IDENTITY)
    with pytest.raises(ConfigError, match="is not the id of the node's key"):
        config.validate()


def test_node_process_with_key_signs(tmp_path: Path, publisher: Publisher) -> None:
    """``nixshard node --key FILE`` signs with that key."""
    identity = NodeIdentity(SigningKey.generate())
    key_file = tmp_path / "node.key"
    key_file.write_text(identity.secret_text() + "\n")
    with NodeProcess(tmp_path / "data", [publisher.public.text()], identity.node_id,
                     extra_args=["--key", str(key_file)]) as node:
        nonce = new_nonce()
        path = f"/records/{record_key()}"
        resp = httpx.get(node.url + path, headers={NONCE_HEADER: nonce})
        assert resp.status_code == 404
        signed = key_of(identity).check("GET", path, b"", nonce, 404, resp.content,
                                        resp.headers)
        assert signed.request_sha256 == hashlib.sha256(b"").digest()

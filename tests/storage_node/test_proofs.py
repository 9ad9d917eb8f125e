"""``POST /proofs`` of an in-process node: answers that verify, absent shards, refusals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from storage_network.wire.proofs import MAX_IDS, check_answer, verify_answer
from storage_network.wire.write_auth import Publisher

from .samples import put_shards, stripe

NONCE = bytes(range(100, 132))


async def prove(client: TestClient, nonce: bytes, ids: list[str]) -> bytes:
    resp = await client.post("/proofs", json={"nonce": nonce.hex(), "ids": ids})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/octet-stream"
    return await resp.read()


async def test_answer_verifies(client: TestClient, publisher: Publisher) -> None:
    shards = stripe(n=6, size=20_000)  # 5 blocks a fragment
    await put_shards(client, publisher, shards)
    ids = [sid for sid, _ in shards]
    answer = await prove(client, NONCE, ids)
    assert verify_answer(NONCE, ids, answer) == set(ids)
    assert len(answer) < 6 * (2 * (4096 + 3 * 32) + 200)  # blocks, not whole shards


async def test_absent_ids_are_answered_absent(client: TestClient, publisher: Publisher) -> None:
    shards = stripe(n=4, size=5000)
    await put_shards(client, publisher, shards[:2])
    ids = [sid for sid, _ in reversed(shards)] + [shards[0][0]]
    answer = await prove(client, NONCE, ids)
    outcomes = check_answer(NONCE, ids, answer)
    assert [o.present for o in outcomes] == [False, False, True, True, True]
    assert all(o.error is None for o in outcomes)
    assert await prove(client, NONCE, []) == b""


async def test_largest_request_is_accepted(client: TestClient) -> None:
    ids = [f"{i:064x}.0" for i in range(MAX_IDS)]
    assert await prove(client, bytes(64), ids) == bytes(MAX_IDS)


async def test_rotten_shard_on_disk_fails_its_proof(client: TestClient, publisher: Publisher,
                                                    data_dir: Path) -> None:
    shards = stripe(n=3, size=30_000)
    await put_shards(client, publisher, shards)
    sid = shards[1][0]
    path = data_dir / "shards" / sid[:2] / sid
    body = bytearray(path.read_bytes())
    body[len(body) // 3] ^= 0x40
    path.write_bytes(bytes(body))
    ids = [sid for sid, _ in shards]
    outcomes = check_answer(NONCE, ids, await prove(client, NONCE, ids))
    assert [o.held for o in outcomes] == [True, False, True]
    # format 2: the rotten block no longer leads to the block root the shard carries
    # (format 1 said "do not match stripe root")
    assert outcomes[1].present and "do not match the block root the shard carries" \
        in str(outcomes[1].error)


GOOD_ID = "ab" * 32 + ".0"


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "proof request body is not JSON"),
    (b"[1, 2]", "proof request body must be"),
    (json.dumps({"ids": [GOOD_ID]}).encode(), 'needs "nonce"'),
    (json.dumps({"nonce": 7, "ids": []}).encode(), 'needs "nonce"'),
    (json.dumps({"nonce": "zz" * 16, "ids": []}).encode(), "bad nonce"),
    (json.dumps({"nonce": "ab" * 15, "ids": []}).encode(), "bad nonce"),
    (json.dumps({"nonce": "ab" * 65, "ids": []}).encode(), "bad nonce"),
    (json.dumps({"nonce": "abc" * 11, "ids": []}).encode(), "bad nonce"),
    (json.dumps({"nonce": " ab" * 16, "ids": []}).encode(), "bad nonce"),
    (json.dumps({"nonce": "ab" * 16}).encode(), 'needs "ids"'),
    (json.dumps({"nonce": "ab" * 16, "ids": GOOD_ID}).encode(), 'needs "ids"'),
    (json.dumps({"nonce": "ab" * 16, "ids": [GOOD_ID, 3]}).encode(), "not a string"),
    (json.dumps({"nonce": "ab" * 16, "ids": ["../../etc/passwd"]}).encode(), "bad shard id"),
    (json.dumps({"nonce": "ab" * 16, "ids": ["ab" * 32 + ".256"]}).encode(), "bad shard id"),
    (json.dumps({"nonce": "ab" * 16, "ids": [GOOD_ID] * (MAX_IDS + 1)}).encode(),
     f"lists {MAX_IDS + 1} ids, at most {MAX_IDS}"),
])
async def test_bad_requests_are_400(client: TestClient, body: bytes, message: str) -> None:
    resp = await client.post("/proofs", data=body,
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400
    text = await resp.text()
    assert text.startswith("error: ") and message in text, text


async def test_oversized_body_is_413(client: TestClient) -> None:
    body = json.dumps({"nonce": "ab" * 16, "ids": ["x" * 300_000]}).encode()
    resp = await client.post("/proofs", data=body)
    assert resp.status == 413
    assert "exceeds the limit" in await resp.text()


async def test_chunked_oversized_body_is_413(client: TestClient) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 10_000

    resp = await client.post("/proofs", data=pieces())
    assert resp.status == 413


async def test_get_is_405(client: TestClient) -> None:
    assert (await client.get("/proofs")).status == 405

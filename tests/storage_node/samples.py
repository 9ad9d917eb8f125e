"""Sample shards, records and signed write headers for the storage-node tests."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence

from aiohttp.test_utils import TestClient

from storage_network.wire.manifest import ChunkRef, make_manifest
from storage_network.wire.record import seal_record, seal_tombstone
from storage_network.wire.stripe import build_stripe, shard_id
from storage_network.wire.write_auth import Publisher, sha256, sign_write

NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"
T0 = 1_700_000_000
"""A signed ``created`` (unix seconds) for records whose order a test sets."""


def stripe(n: int = 3, size: int = 200) -> list[tuple[str, bytes]]:
    """``n`` shards ``(id, body)`` of one stripe over random fragments of ``size`` bytes."""
    fragments = [os.urandom(size) for _ in range(n)]
    root, proofs = build_stripe(fragments)
    return [(shard_id(root, i), proofs[i] + fragments[i]) for i in range(n)]


def record_key() -> str:
    """A random 32-character store-path hash part."""
    return "".join(secrets.choice(NIX32) for _ in range(32))


def chunk_refs(count: int = 2) -> list[ChunkRef]:
    """``count`` random chunk references: the *content* of a record."""
    refs = []
    for i in range(count):
        plain = os.urandom(64)
        refs.append(ChunkRef(hashlib.sha256(plain).digest(), os.urandom(32), 1000 + i, 500 + i))
    return refs


def record(publisher: Publisher, key: str, chunks: int = 2, note: str = "",
           created: int | None = None, refs: Sequence[ChunkRef] | None = None) -> bytes:
    """A record for ``key`` sealed by ``publisher``: a small narinfo and chunk refs.

    Args:
        chunks: how many random chunk refs (a new content) when ``refs`` is None.
        created: the signed unix seconds (default: now).
        refs: the chunk refs (the same refs make the same content).
    """
    manifest = make_manifest("isa_l_rs_cauchy", 4, 2, list(refs or chunk_refs(chunks)))
    narinfo = f"StorePath: /nix/store/{key}-hello{note}\nURL: nar/x.nar.zst\n".encode()
    return seal_record(publisher, key, narinfo, manifest, created)


def tombstone(publisher: Publisher, key: str, created: int | None = None) -> bytes:
    """A tombstone for ``key`` (deleted at ``created``, default now) sealed by ``publisher``."""
    return seal_tombstone(publisher, key, "isa_l_rs_cauchy", 4, 2, created)


def signed_headers(publisher: Publisher, method: str, path: str, body: bytes,
                   now: float | None = None, node_id: str = "node-1") -> dict[str, str]:
    """The headers that authorise ``method path`` with ``body`` on node ``node_id``
    (``now`` in Unix seconds; a fresh nonce each call)."""
    return sign_write(publisher, node_id, method, path, sha256(body), now=now)


async def put_shards(client: TestClient, publisher: Publisher,
                     shards: Sequence[tuple[str, bytes]]) -> None:
    """PUT every ``(id, body)`` shard, signed by ``publisher``; each must be stored (201)."""
    for sid, body in shards:
        headers = signed_headers(publisher, "PUT", f"/shards/{sid}", body)
        resp = await client.put(f"/shards/{sid}", data=body, headers=headers)
        assert resp.status == 201, await resp.text()

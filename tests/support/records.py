"""Payloads, record keys and narinfo records for tests on real nodes.

:func:`payload` makes test data, :func:`record_key` a key nodes accept,
:func:`stripe_ids` names a manifest's shards; :func:`store_path` and
:func:`publish_path` make and publish hand-made narinfo records; :func:`scanned`
says what a scan of the network finds of one key.
"""

from __future__ import annotations

import hashlib
import random
import time

from nix_formats.store_path import StorePath
from nix_records import narinfo_record, new_narinfo
from storage_network.client import NetworkClient
from storage_network.nodes.placement import record_nodes
from storage_network.upkeep.record_scan import RecordScan, ScannedKey
from storage_network.wire.manifest import Manifest
from storage_network.wire.record import seal_record
from storage_network.wire.sealed_metadata import seal_metadata
from storage_network.wire.stripe import shard_id
from storage_network.wire.write_auth import Publisher
from storage_network.write.publish import keyed_links, publish_record, store_payload

NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"


def payload(seed: int, size: int) -> bytes:
    """``size`` bytes: random runs mixed with repetitive runs (compressible, no dedup inside)."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(rng.randrange(1000, 9000))
        out += bytes([rng.randrange(256)]) * rng.randrange(100, 3000) + rng.randbytes(8)
    return bytes(out[:size])


def record_key(seed: int) -> str:
    """A record key of the form nodes accept (32 nix32 characters)."""
    rng = random.Random(seed)
    return "".join(rng.choice(NIX32) for _ in range(32))


def stripe_ids(manifest: Manifest, roots: set[bytes] | None = None) -> set[str]:
    """The ids of every shard of ``manifest``'s stripes (of the chunks whose stripe root
    is in ``roots``, when given)."""
    return {shard_id(ref.root, i) for ref in manifest.chunks for i in range(manifest.n)
            if roots is None or ref.root in roots}


def store_path(seed: int, name: str) -> StorePath:
    """A store path of a random (by ``seed``) hash part and ``name``."""
    rng = random.Random(f"store-path-{seed}")
    return StorePath("".join(rng.choice(NIX32) for _ in range(32)), name)


async def publish_path(net: NetworkClient, publisher: Publisher, path: StorePath,
                       refs: tuple[StorePath, ...] = (), *, seed: int, size: int = 30_000,
                       age: float = 0.0) -> Manifest:
    """Store a payload and publish the narinfo record of ``path`` (references ``refs``),
    signed as created ``age`` seconds ago; sealed when ``net`` holds a keyring."""
    data = payload(seed, size)
    manifest, stats = await store_payload(net, publisher, [data])
    narinfo = new_narinfo(path, hashlib.sha256(data).digest(), len(data), manifest,
                          references=[r.path for r in refs])
    content = narinfo_record(narinfo)
    if age == 0.0:
        await publish_record(net, publisher, content.key, content.metadata, manifest,
                             touched_at=stats.touched_at, links=content.links)
        return manifest
    key, metadata = content.key, content.metadata
    if net.keyring is not None:
        key = net.keyring.current.record_key(key)
        metadata = seal_metadata(net.keyring.current, key, metadata, manifest,
                                 links=keyed_links(net.keyring, content.links, key))
    sealed = seal_record(publisher, key, metadata, manifest, created=int(time.time() - age))
    for node in record_nodes(net.network.nodes, key)[:net.network.record_replicas]:
        await net.nodes[node.id].put_record(key, sealed, publisher)
    return manifest


async def scanned(net: NetworkClient, key: str) -> ScannedKey | None:
    """What a record scan of the whole network finds of ``key`` (every copy read and
    verified), None when no node lists it."""
    async for item in RecordScan(net):
        if item.key == key:
            return item
    return None

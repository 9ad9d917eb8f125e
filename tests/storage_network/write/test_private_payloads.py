"""A private cache's payloads and records on real node processes (docs/private-caches.md).

One private 6-node network (4-of-6, small chunks) for the module: a client
with the keyring seals chunks and records and opens them again; a client
without it, or with another keyring, finds nothing under the plain key; the
nodes' files hold only ciphertext.  Tests never kill nodes and each uses its
own payloads and record keys.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.client import NetworkClient
from storage_network.coding.chunker import iter_chunks
from storage_network.coding.codec import StripeCodec
from storage_network.coding.sealing import SEAL_OVERHEAD, CacheSecret, Keyring
from storage_network.errors import NotFoundError
from storage_network.read.record_lookup import fetch_record, fetch_stored_record
from storage_network.wire.manifest import Manifest
from storage_network.wire.sealed_metadata import MAGIC
from storage_network.write.publish import publish_record, store_payload
from tests.support.network import NODES, SMALL_CHUNKS, K, M

from ..conftest import payload, read_back, record_key

WINDOW = 32


@pytest.fixture(scope="module")
def private_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """Six started nodes of a private network (its keyring in ``.keyring``)."""
    local = LocalNetwork(tmp_path_factory.mktemp("private-net"),
                         new_publisher("sn-private-1")[0])
    with local:
        local.start_nodes(NODES, K, M, SMALL_CHUNKS, private=True)
        assert local.network is not None and local.network.private
        assert local.keyring is not None
        yield local


@pytest.fixture
def local(private_net: LocalNetwork) -> LocalNetwork:
    """The module's network is the private one (``net`` is then a client without a keyring)."""
    return private_net


def keyring_of(local: LocalNetwork) -> Keyring:
    assert local.keyring is not None
    return local.keyring


def client(local: LocalNetwork, keyring: Keyring | None) -> NetworkClient:
    """A client of ``local`` holding ``keyring`` (None: no keyring)."""
    assert local.network is not None
    return NetworkClient(local.network, timeout=10.0, keyring=keyring)


async def publish_sealed(net: NetworkClient, local: LocalNetwork, seed: int,
                         size: int = 120_000, metadata: bytes = b"meta"
                         ) -> tuple[str, bytes, Manifest]:
    """Store ``payload(seed, size)`` through ``net`` (it holds a keyring) and publish it
    under the plain key ``record_key(seed)``: the key, the data and the manifest."""
    data = payload(seed, size)
    key = record_key(seed)
    manifest, _ = await store_payload(net, local.publisher, [data])
    await publish_record(net, local.publisher, key, metadata, manifest)
    return key, data, manifest


def node_files(local: LocalNetwork) -> list[Path]:
    """Every file under every node's data directory."""
    return sorted(p for i in range(1, len(local.nodes) + 1)
                  for p in local.node_dir(i).rglob("*") if p.is_file())


def windows(marker: bytes) -> set[bytes]:
    """Every ``WINDOW``-byte window of ``marker``."""
    return {marker[i:i + WINDOW] for i in range(len(marker) - WINDOW + 1)}


def leaks(blob: bytes, marker_windows: set[bytes]) -> bool:
    """Whether ``blob`` contains any of ``marker_windows`` (all ``WINDOW`` bytes long)."""
    return any(blob[i:i + WINDOW] in marker_windows for i in range(len(blob) - WINDOW + 1))


# --- a sealed payload and record, read back with the keyring --------------------------


async def test_sealed_record_opens_to_the_plain_metadata_and_payload(
        local: LocalNetwork) -> None:
    async with client(local, keyring_of(local)) as net:
        key, data, stored = await publish_sealed(net, local, 9101, metadata=b"StorePath: x\n")
        record = await fetch_record(net, key)
        assert record.key == key
        assert record.metadata == b"StorePath: x\n"
        manifest = record.manifest
        assert manifest.sealed
        assert manifest == stored  # chunk ids, roots, sizes
        assert len(manifest.chunks) > 3
        assert all(len(c.key) == 32 for c in manifest.chunks)
        assert [c.key for c in manifest.chunks] == [c.key for c in stored.chunks]
        assert manifest.size == len(data)
        assert all(c.size > 0 for c in manifest.chunks)
        assert manifest.frames_size == manifest.stored_size - SEAL_OVERHEAD * len(
            manifest.chunks)
        assert await read_back(net, manifest) == data


async def test_without_the_keyring_only_the_sealed_record_is_visible(
        local: LocalNetwork, net: NetworkClient) -> None:
    """A client without a keyring (``net``) finds nothing under the plain key; under the
    keyed key it finds a record whose metadata and sizes are sealed away."""
    keyring = keyring_of(local)
    metadata = b"StorePath: /nix/store/secret-path-name\nNarHash: sha256:plain\n"
    async with client(local, keyring) as sealer:
        key, data, _ = await publish_sealed(sealer, local, 9102, metadata=metadata)
    with pytest.raises(NotFoundError):
        await fetch_record(net, key)
    with pytest.raises(NotFoundError):
        await fetch_stored_record(net, key)
    keyed = keyring.current.record_key(key)
    assert keyed != key
    record = await fetch_stored_record(net, keyed)
    assert record.metadata.startswith(MAGIC)
    assert metadata not in record.metadata
    assert b"secret-path-name" not in record.metadata
    manifest = record.manifest
    assert manifest.sealed and manifest.size == 0
    assert all(c.size == 0 and c.key == b"" for c in manifest.chunks)
    plain_ids = {hashlib.sha256(chunk).digest()
                 for chunk in iter_chunks([data], SMALL_CHUNKS)}
    assert len(plain_ids) == len(manifest.chunks)
    assert not plain_ids & {c.chunk_id for c in manifest.chunks}


async def test_another_keyring_finds_nothing(local: LocalNetwork) -> None:
    async with client(local, keyring_of(local)) as sealer:
        key, _, _ = await publish_sealed(sealer, local, 9103, size=40_000)
        assert (await fetch_record(sealer, key)).metadata == b"meta"
    other = Keyring([CacheSecret.generate("other-cache")])
    async with client(local, other) as stranger:
        with pytest.raises(NotFoundError):
            await fetch_record(stranger, key)


async def test_rotation_reads_the_old_secret_and_writes_the_new_one(
        local: LocalNetwork, net: NetworkClient) -> None:
    """Keyring [B, A] reads what [A] published; its own publishes go under B's keyed key,
    which a client holding only [A] cannot read."""
    old = keyring_of(local)
    a = old.current
    b = CacheSecret.generate("rotated-b")
    rotated = Keyring([b, a])
    async with client(local, old) as first:
        old_key, old_data, _ = await publish_sealed(first, local, 9104, size=40_000)
    async with client(local, rotated) as second:
        record = await fetch_record(second, old_key)
        assert record.metadata == b"meta"
        assert await read_back(second, record.manifest) == old_data
        new_key, new_data, _ = await publish_sealed(second, local, 9105, size=40_000,
                                                    metadata=b"rotated")
        again = await fetch_record(second, new_key)
        assert again.metadata == b"rotated"
        assert await read_back(second, again.manifest) == new_data
    stored = await fetch_stored_record(net, b.record_key(new_key))
    assert stored.metadata.startswith(MAGIC) and stored.manifest.sealed
    with pytest.raises(NotFoundError):
        await fetch_stored_record(net, a.record_key(new_key))
    async with client(local, old) as first:
        assert (await fetch_record(first, old_key)).metadata == b"meta"
        with pytest.raises(NotFoundError):
            await fetch_record(first, new_key)


# --- dedup and ciphertext on the nodes ---------------------------------------------------


async def test_a_payload_stored_twice_under_one_keyring_is_deduplicated(
        local: LocalNetwork) -> None:
    data = payload(9106, 100_000)
    async with client(local, keyring_of(local)) as net:
        first, stats1 = await store_payload(net, local.publisher, [data])
        files = node_files(local)
        second, stats2 = await store_payload(net, local.publisher, [data])
    assert stats1.chunks == len(first.chunks) > 3
    assert stats1.stored_bytes > 0 and stats1.chunks_reused == 0
    assert stats2.chunks == stats1.chunks
    assert stats2.chunks_reused == stats2.chunks
    assert stats2.stored_bytes == 0
    assert second == first
    assert [c.key for c in second.chunks] == [c.key for c in first.chunks]
    assert node_files(local) == files


async def test_nodes_hold_only_ciphertext(local: LocalNetwork) -> None:
    """A random 4 KiB marker inside a payload: after a sealed store and publish no node
    file, by name or content, holds any 32-byte window of it; the same payload
    encoded without a secret does (so the check can find it)."""
    marker = random.Random(9107).randbytes(4096)
    data = payload(9107, 30_000) + marker + payload(9108, 30_000)
    marker_windows = windows(marker)
    async with client(local, keyring_of(local)) as net:
        manifest, _ = await store_payload(net, local.publisher, [data])
        await publish_record(net, local.publisher, record_key(9107), marker[:64], manifest)
        assert await read_back(net, manifest) == data
    files = node_files(local)
    assert len(files) > len(manifest.chunks) * (K + M) / 2
    for path in files:
        assert not leaks(os.fsencode(path), marker_windows), path
        assert not leaks(path.read_bytes(), marker_windows), path
    # the control: the same chunks coded as a public cache would
    assert local.network is not None
    codec = StripeCodec(K, M, local.network.codec, local.network.zstd_level)
    bodies = [body for chunk in iter_chunks([data], SMALL_CHUNKS)
              for body in codec.encode(chunk).bodies]
    assert any(leaks(body, marker_windows) for body in bodies)


# --- a manifest and a client that do not match ------------------------------------------


async def test_sealed_and_public_manifests_need_the_matching_client(
        local: LocalNetwork, net: NetworkClient) -> None:
    data = payload(9109, 20_000)
    async with client(local, keyring_of(local)) as sealer:
        sealed, _ = await store_payload(sealer, local.publisher, [data])
        public, _ = await store_payload(net, local.publisher, [data])
        assert sealed.sealed and not public.sealed
        with pytest.raises(ValueError, match="sealed manifest"):
            await publish_record(sealer, local.publisher, record_key(9109), b"m", public)
    with pytest.raises(ValueError, match="sealed manifest"):
        await publish_record(net, local.publisher, record_key(9110), b"m", sealed)
    for key in (record_key(9109), keyring_of(local).current.record_key(record_key(9109)),
                record_key(9110)):
        with pytest.raises(NotFoundError):
            await fetch_stored_record(net, key)

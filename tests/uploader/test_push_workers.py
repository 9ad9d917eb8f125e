"""A push that encodes in worker processes, on real node processes (public and private).

The manifest (chunk ids, stripe roots, sizes, keys) must be the one the
client's thread pool makes, and the payload must read back; an encoder made
for other parameters is refused before anything is stored.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator

import pytest

from nixshard.localnet import LocalNetwork
from storage_network.client import NetworkClient
from storage_network.write.encode_workers import WorkerEncoder
from storage_network.write.publish import store_payload
from tests.support.network import running_network
from tests.support.reads import read_back
from uploader.push import push_encoder


@pytest.fixture(scope="module", params=[False, True], ids=["public", "private"])
def local(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[LocalNetwork]:
    with running_network(tmp_path_factory.mktemp("net"), private=request.param) as net:
        yield net


def payload(size: int, seed: int) -> list[bytes]:
    """``size`` bytes (random and repeated halves) in uneven pieces."""
    rng = random.Random(seed)
    data = b"".join(rng.randbytes(3000) + b"nixshard " * 333 for _ in range(size // 6000))
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


async def test_workers_store_what_the_pool_stores(local: LocalNetwork) -> None:
    network = local.network
    assert network is not None
    pieces = payload(600_000, 1)
    async with push_encoder(network, local.keyring) as encoder, \
            NetworkClient(network, keyring=local.keyring) as net:
        by_workers, stats = await store_payload(net, local.publisher, pieces, encoder=encoder)
        by_pool, _ = await store_payload(net, local.publisher, pieces)
        assert await read_back(net, by_workers) == b"".join(pieces)
    assert by_workers == by_pool
    assert [c.key for c in by_workers.chunks] == [c.key for c in by_pool.chunks]
    assert by_workers.sealed == network.private
    assert stats.chunks == len(by_workers.chunks) > 10
    assert stats.chunks_reused == 0 and stats.stored_bytes > 0


async def test_an_encoder_for_other_parameters_is_refused(local: LocalNetwork) -> None:
    network = local.network
    assert network is not None
    other = dataclasses.replace(network, zstd_level=9)
    async with WorkerEncoder.for_network(other, local.keyring or (), workers=1) as encoder, \
            NetworkClient(network, keyring=local.keyring) as net:
        with pytest.raises(ValueError, match="does not fit"):
            await store_payload(net, local.publisher, payload(50_000, 2), encoder=encoder)


def test_the_push_encoder_knows_the_keyring(local: LocalNetwork) -> None:
    network = local.network
    assert network is not None
    encoder = push_encoder(network, local.keyring)
    assert encoder.secrets == (tuple(local.keyring) if local.keyring is not None else ())
    assert (encoder.k, encoder.m, encoder.zstd_level) == (network.k, network.m,
                                                            network.zstd_level)
    assert encoder.layout.in_bytes == network.chunking.max_size

"""Fixtures of the storage_network tests: real node processes via nixshard.localnet.

:func:`running_network` (from :mod:`tests.support.network`) starts nodes.
``live_net`` is one 6-node network (k=4, m=2, small chunks) shared by a test
module; tests on it never kill nodes and use their own payloads.  ``fresh_net``
is a new 6-node network per test, for tests that kill nodes.  ``net6`` is a
6-node network of a module whose nodes may be restarted with test faults.

``local`` is the network a module's tests run on (``live_net`` unless the module
overrides it); ``publisher`` is its publisher and ``net`` a client of it.
:func:`network_client` makes other clients, :func:`read_back` reads a payload back.
The helpers that need no network (:func:`payload`, :func:`record_key`,
:func:`stripe_ids`) and :func:`read_back` / :func:`read_plan` live in
:mod:`tests.support.records` and :mod:`tests.support.reads`, re-exported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from nixshard.localnet import FAULT_ENV, LocalNetwork
from storage_network.client import DEFAULT_HEDGE_AFTER, NetworkClient
from storage_network.nodes.scores import Scores
from storage_network.wire.manifest import Manifest
from storage_network.wire.write_auth import Publisher
from storage_network.write.publish import publish_record, store_payload
from tests.support.network import (  # noqa: F401 - the test modules import them from here
    NODES,
    SMALL_CHUNKS,
    K,
    M,
    running_network,
)
from tests.support.reads import read_back, read_plan  # noqa: F401 - as above
from tests.support.records import (  # noqa: F401 - the test modules import them from here
    NIX32,
    payload,
    record_key,
    stripe_ids,
)


@pytest.fixture(scope="module")
def live_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """A started 6-node network, shared by the tests of one module."""
    with running_network(tmp_path_factory.mktemp("live-net")) as local:
        yield local


@pytest.fixture
def fresh_net(tmp_path: Path) -> Iterator[LocalNetwork]:
    """A started 6-node network of this test alone (it may kill nodes)."""
    with running_network(tmp_path / "net") as local:
        yield local


@pytest.fixture(scope="module")
def net6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """Six nodes (k=4, m=2) of one module that may be restarted with test faults
    (:data:`nixshard.localnet.FAULT_ENV`): each test stores its own payload."""
    with running_network(tmp_path_factory.mktemp("net6"), 6, node_env=FAULT_ENV) as local:
        yield local


@pytest.fixture
def local(live_net: LocalNetwork) -> LocalNetwork:
    """The network this module's tests run on (override it in a module)."""
    return live_net


@pytest.fixture
def publisher(local: LocalNetwork) -> Publisher:
    """The publisher of ``local``."""
    return local.publisher


@pytest.fixture
async def net(local: LocalNetwork) -> AsyncIterator[NetworkClient]:
    """A client of ``local`` (10 s timeout)."""
    async with network_client(local) as client:
        yield client


def network_client(local: LocalNetwork, timeout: float = 10.0, *,
                   hedge_after: float = DEFAULT_HEDGE_AFTER, scores: Scores | None = None,
                   record_replicas: int | None = None) -> NetworkClient:
    """A client of a started network (use it with ``async with``).

    Args:
        record_replicas: when given, the network must keep this many copies of a
            record (what the calling test assumes).
    """
    assert local.network is not None
    if record_replicas is not None:
        assert local.network.record_replicas == record_replicas
    return NetworkClient(local.network, timeout=timeout, hedge_after=hedge_after,
                         scores=scores)


async def publish(net: NetworkClient, local: LocalNetwork, seed: int,
                  size: int = 200_000) -> tuple[str, bytes, Manifest]:
    """Store ``payload(100 + seed, size)`` and publish it as ``record_key(100 + seed)``
    (metadata ``b"meta"``): the key, the data and the manifest."""
    data = payload(100 + seed, size)
    key = record_key(100 + seed)
    manifest, _ = await store_payload(net, local.publisher, [data])
    await publish_record(net, local.publisher, key, b"meta", manifest)
    return key, data, manifest

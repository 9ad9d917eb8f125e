"""The daemon's record lookup (:mod:`cache_server.records`) against real nodes:
concurrent lookups share one, and an absent record is remembered for ``negative_ttl``.

Node-side record reads are counted from the nodes' own ``/metrics``.
"""

from __future__ import annotations

import asyncio

import pytest

from cache_server.records import RecordLookup
from storage_network.client import NetworkClient
from storage_network.errors import NotFoundError
from tests.support.clock import Clock
from tests.support.metrics import scrape

from .conftest import Served

ABSENT = "0" * 32


def record_reads(s: Served) -> float:
    """404 answers to ``GET /records/{key}`` summed over every node."""
    return sum(scrape(node.url, "nixshard_node_requests_total", route="/records/{key}",
                      method="GET", status="404") for node in s.net.nodes)


def network(s: Served) -> NetworkClient:
    assert s.net.network is not None
    return NetworkClient(s.net.network)


async def test_concurrent_lookups_of_one_path_share_one_network_lookup(served: Served) -> None:
    async with network(served) as net:
        before = record_reads(served)
        with pytest.raises(NotFoundError):
            await RecordLookup(net, negative_ttl=0).get(ABSENT)
        one = record_reads(served) - before
        assert one >= 1
        lookup = RecordLookup(net, negative_ttl=0)
        before = record_reads(served)
        results = await asyncio.gather(*(lookup.get(ABSENT) for _ in range(8)),
                                       return_exceptions=True)
        assert all(isinstance(r, NotFoundError) for r in results)
        assert record_reads(served) - before == one
        hits = await asyncio.gather(*(lookup.get(served.info.store_path.hash_part)
                                      for _ in range(4)))
        assert all(h is hits[0] for h in hits)


async def test_an_absent_record_is_remembered_for_negative_ttl(served: Served) -> None:
    clock = Clock()
    async with network(served) as net:
        lookup = RecordLookup(net, negative_ttl=5.0, clock=clock)
        before = record_reads(served)
        with pytest.raises(NotFoundError):
            await lookup.get(ABSENT)
        asked = record_reads(served)
        assert asked > before
        clock.now += 4.9
        with pytest.raises(NotFoundError, match=ABSENT):
            await lookup.get(ABSENT)
        assert record_reads(served) == asked  # answered from memory
        clock.now += 0.2
        with pytest.raises(NotFoundError):
            await lookup.get(ABSENT)
        assert record_reads(served) > asked  # expired: the network was asked again
        asked = record_reads(served)
        lookup.forget(ABSENT)  # a record was just written for it
        with pytest.raises(NotFoundError):
            await lookup.get(ABSENT)
        assert record_reads(served) > asked

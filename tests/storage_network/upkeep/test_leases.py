"""Record leases in lookups and garbage collection: a record past its signed ``expires``
is absent to readers and dropped by gc (its shards swept as unreferenced), a renewed
one is kept, and a record without a lease is untouched.

Two layers: :func:`plan_expiry` on hand-made records (what a lapsed record keeps
and what keeps it), then one 6-node network of real node processes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest

from nixshard.localnet import LocalNetwork, new_publisher
from storage_network.client import NetworkClient
from storage_network.errors import NotFoundError
from storage_network.read.record_lookup import fetch_record
from storage_network.upkeep.gc import collect_garbage
from storage_network.wire.manifest import Manifest
from storage_network.wire.record import Record, open_record, seal_record
from storage_network.wire.write_auth import Publisher
from storage_network.write.publish import publish_record, store_payload
from storage_network.write.record_write import write_version
from tests.support.network import K, M, running_network
from tests.support.reads import read_back
from tests.support.record_tables import close_tables, plan_records, reader
from tests.support.records import payload, record_key, stripe_ids

T0 = 1_700_000_000
PUBLISHER = new_publisher("lease-plan-1")[0]


# --- plan_expiry: what a lapsed record keeps, and what keeps it ---------------------------


@pytest.fixture(autouse=True)
def _tables() -> Iterator[None]:
    yield
    close_tables()


def inventory(*records: tuple[str, str, int | None]) -> list[tuple[Record, float]]:
    """Live records ``(key, metadata, expires)`` created at ``T0 - 60``, read at T0."""
    made = []
    for key, metadata, expires in records:
        data = metadata.encode()
        rec = Record(key, PUBLISHER.public, data, Manifest("isa_l_rs_cauchy", K, M, ()),
                     T0 - 60, digest=hashlib.sha256(key.encode() + data).digest(),
                     expires=expires)
        made.append((rec, float(T0)))
    return made


def test_a_lapsed_record_expires_even_when_needed_and_keeps_nothing() -> None:
    app, lib, libc, leased = (record_key(900 + i) for i in range(4))
    inv = inventory((app, f"needs={lib}", None),            # no lease: stays
                    (lib, f"needs={libc}", T0 - 1),         # lapsed, needed by app
                    (libc, "", T0 - 1000),                  # lapsed, needed by lib
                    (leased, "", T0 + 3600))                # lease still running
    plan = plan_records(inv, T0, None, None, reader)
    assert set(plan.expiring) == {lib, libc}
    assert plan.expiring[lib].startswith("lease: ended 0.0 d ago")
    assert not plan.retained


def test_a_lapsed_pin_is_no_pin() -> None:
    pin, path = record_key(910), record_key(911)
    inv = inventory((pin, f"pin=nightly;needs={path}", T0 - 5), (path, "", None))
    plan = plan_records(inv, T0, 0.0, None, reader)  # max_age 0: everything unpinned is due
    assert set(plan.expiring) == {pin, path} and not plan.pins


# --- on real nodes ------------------------------------------------------------------------


async def store(net: NetworkClient, publisher: Publisher, seed: int) -> tuple[bytes, Manifest]:
    data = payload(seed, 50_000)
    manifest, _ = await store_payload(net, publisher, [data])
    return data, manifest


async def write(net: NetworkClient, publisher: Publisher, key: str, manifest: Manifest, *,
                created: int, expires: int | None) -> None:
    """Write a record of ``manifest`` sealed with the given times to ``key``'s window."""
    data = seal_record(publisher, key, b"meta", manifest, created=created, expires=expires)
    opened = open_record({publisher.name: publisher.public}, key, data)
    outcome = await write_version(net, publisher, key, data, opened)
    assert len(outcome.stored) == net.network.record_replicas, outcome.failure_text()


async def held_ids(net: NetworkClient) -> set[str]:
    return {s.id for client in net.nodes.values() for s in await client.list_shards()}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """This module's own network: its collections sweep every unreferenced shard."""
    with running_network(tmp_path_factory.mktemp("lease-net")) as local:
        yield local


async def test_lapsed_records_are_absent_and_collected_renewed_and_plain_ones_kept(
        net: NetworkClient, publisher: Publisher) -> None:
    now = int(time.time())
    lapsed, renewed, plain, running = (record_key(920 + i) for i in range(4))
    lapsed_data, lapsed_man = await store(net, publisher, 920)
    await write(net, publisher, lapsed, lapsed_man, created=now - 100, expires=now - 10)

    renewed_data, renewed_man = await store(net, publisher, 921)
    await write(net, publisher, renewed, renewed_man, created=now - 100, expires=now + 5)
    # pushing the same content again with a later end renews it (a replacement, not a
    # conflict)
    await publish_record(net, publisher, renewed, b"meta", renewed_man, expires=now + 7200)
    assert (await fetch_record(net, renewed)).expires == now + 7200

    plain_data, plain_man = await store(net, publisher, 922)
    await publish_record(net, publisher, plain, b"meta", plain_man)  # no lease: version 3
    running_data, running_man = await store(net, publisher, 923)
    await publish_record(net, publisher, running, b"meta", running_man, expires=now + 3600)

    with pytest.raises(NotFoundError, match="lease ended"):
        await fetch_record(net, lapsed)

    # a collection ten minutes from now: the renewed record's first lease would have
    # ended by then, the renewal's has not
    report = await collect_garbage(net, publisher, max_age=None, max_idle=None, grace=0.0,
                                   dry_run=False, now=now + 600)
    assert {e.key for e in report.expired} == {lapsed}
    assert report.expired[0].reason.startswith("lease: ended")
    held = await held_ids(net)
    assert not stripe_ids(lapsed_man) & held, "the lapsed record's shards were swept"
    for key, data, man in ((renewed, renewed_data, renewed_man), (plain, plain_data, plain_man),
                           (running, running_data, running_man)):
        assert stripe_ids(man) <= held
        assert await read_back(net, (await fetch_record(net, key)).manifest) == data
    with pytest.raises(NotFoundError, match="deleted"):
        await fetch_record(net, lapsed)

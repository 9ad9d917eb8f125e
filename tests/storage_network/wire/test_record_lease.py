"""Record leases (storage_network.wire.record): the signed ``expires`` of a version 4
envelope, version 3 records without one, and renewal as a replacement."""

from __future__ import annotations

import struct

import pytest

from nixshard.localnet import new_publisher
from storage_network.errors import RecordError
from storage_network.wire import record as wire
from storage_network.wire.manifest import ChunkRef, make_manifest
from storage_network.wire.record import (
    MAGIC,
    MAGIC_V4,
    Replacement,
    open_record,
    replacement,
    seal_record,
    seal_tombstone,
)
from storage_network.wire.write_auth import Publisher, PublisherKey

KEY = "0123456789abcdfghijklmnpqrsvwxyz"
T0 = 1_700_000_000
MANIFEST = make_manifest("isa_l_rs_cauchy", 4, 2, [ChunkRef(b"\1" * 32, b"\2" * 32, 100, 50)])


@pytest.fixture(scope="module")
def publisher() -> Publisher:
    return new_publisher("lease-tests-1")[0]


@pytest.fixture
def keys(publisher: Publisher) -> dict[str, PublisherKey]:
    return {publisher.name: publisher.public}


def test_a_lease_is_signed_and_read_back(publisher: Publisher,
                                         keys: dict[str, PublisherKey]) -> None:
    data = seal_record(publisher, KEY, b"meta", MANIFEST, created=T0, expires=T0 + 3600)
    assert data.startswith(MAGIC_V4)
    rec = open_record(keys, KEY, data)
    assert (rec.expires, rec.created, rec.metadata) == (T0 + 3600, T0, b"meta")
    assert not rec.expired(T0 + 3599) and rec.expired(T0 + 3600)


def test_a_record_without_lease_stays_version_3_and_never_expires(
        publisher: Publisher, keys: dict[str, PublisherKey]) -> None:
    data = seal_record(publisher, KEY, b"meta", MANIFEST, created=T0)
    assert data.startswith(MAGIC)
    rec = open_record(keys, KEY, data)
    assert rec.expires is None and not rec.expired(2 ** 62)


def test_the_lease_cannot_be_changed_without_the_key(publisher: Publisher,
                                                     keys: dict[str, PublisherKey]) -> None:
    data = bytearray(seal_record(publisher, KEY, b"meta", MANIFEST, created=T0,
                                 expires=T0 + 60))
    head = len(MAGIC_V4) + 2 + len(publisher.name) + 64
    offset = head + 8 + 1  # created, kind, then expires
    assert struct.unpack_from(">Q", data, offset)[0] == T0 + 60
    struct.pack_into(">Q", data, offset, T0 + 10 ** 9)
    with pytest.raises(RecordError, match="bad signature"):
        open_record(keys, KEY, bytes(data))
    # nor moved into a version 3 envelope (the magic is signed too)
    with pytest.raises(RecordError):
        open_record(keys, KEY, MAGIC + bytes(data[len(MAGIC_V4):]))


@pytest.mark.parametrize("expires", [0, -5, 2 ** 64])
def test_a_lease_end_out_of_range_is_refused_when_sealing(publisher: Publisher,
                                                          expires: int) -> None:
    with pytest.raises(ValueError, match="lease"):
        seal_record(publisher, KEY, b"meta", MANIFEST, created=T0, expires=expires)


def test_a_tombstone_or_a_zero_end_with_a_lease_is_malformed(
        publisher: Publisher, keys: dict[str, PublisherKey]) -> None:
    """Envelopes signed by a valid key but with a lease where none may be."""
    for kind, expires in ((wire.TOMBSTONE, T0 + 60), (wire.RECORD, 0)):
        meta, man = (b"", make_manifest("isa_l_rs_cauchy", 4, 2, [])) \
            if kind == wire.TOMBSTONE else (b"meta", MANIFEST)
        payload = struct.pack(">QBQI", T0, kind, expires, len(meta)) + meta + man.encode()
        sig = publisher.sign(MAGIC_V4 + KEY.encode() + b"\n" + payload)
        name = publisher.name.encode()
        data = MAGIC_V4 + struct.pack(">H", len(name)) + name + sig + payload
        with pytest.raises(RecordError, match="lease"):
            open_record(keys, KEY, data)


def test_a_renewal_replaces_the_older_lease(publisher: Publisher,
                                            keys: dict[str, PublisherKey]) -> None:
    first = open_record(keys, KEY, seal_record(publisher, KEY, b"meta", MANIFEST, created=T0,
                                               expires=T0 + 60))
    renewed = open_record(keys, KEY, seal_record(publisher, KEY, b"meta", MANIFEST,
                                                 created=T0 + 30, expires=T0 + 3600))
    assert replacement(first, renewed) is Replacement.STORE
    assert replacement(renewed, first) is Replacement.OLDER
    tomb = open_record(keys, KEY, seal_tombstone(publisher, KEY, "isa_l_rs_cauchy", 4, 2,
                                                 created=T0 + 40))
    assert tomb.expires is None

"""Signatures: t of n maintainers of the previous epoch, rotation, the chain of epochs."""

from __future__ import annotations

import dataclasses

import pytest

from storage_network.errors import MapError
from storage_network.network_map import (
    Bootstrap,
    SignedMap,
    parse_signed_map,
    verify_chain,
    verify_next,
)
from storage_network.network_map.signatures import describe_signatures
from storage_network.wire.write_auth import Publisher

from .maps import first_epoch, maintainers, next_epoch, node_entries, sign

URLS = ["http://127.0.0.1:9201", "http://127.0.0.1:9202", "http://127.0.0.1:9203"]


@pytest.fixture
def keys() -> list[Publisher]:
    return maintainers("m", 3)


@pytest.fixture
def epoch1(keys: list[Publisher]) -> SignedMap:
    _, nodes = node_entries(URLS)
    return sign(first_epoch(nodes, keys), keys[0], keys[2])


def boot(keys: list[Publisher], threshold: int = 2) -> Bootstrap:
    return Bootstrap(tuple(k.public for k in keys), threshold, tuple(URLS), "test bootstrap")


def test_two_of_three_is_valid(keys: list[Publisher], epoch1: SignedMap) -> None:
    verify_next(boot(keys).trust_root(), epoch1)
    epoch2 = sign(next_epoch(epoch1, k=1), keys[1], keys[2])
    verify_next(epoch1.trust_root(), epoch2)
    assert verify_chain(boot(keys).trust_root(), [epoch1, epoch2]) == [epoch1, epoch2]


def test_one_of_three_is_refused_with_the_reason(keys: list[Publisher], epoch1: SignedMap) -> None:
    epoch2 = sign(next_epoch(epoch1), keys[1])
    with pytest.raises(MapError, match="epoch 2 has 1 valid signature of maintainers of "
                                       "epoch 1, needs 2"):
        verify_next(epoch1.trust_root(), epoch2)


def test_signing_twice_is_one_signature(keys: list[Publisher], epoch1: SignedMap) -> None:
    twice = sign(next_epoch(epoch1), keys[1], keys[1])
    assert len(twice.signatures) == 1
    with pytest.raises(MapError, match="has 1 valid signature"):
        verify_next(epoch1.trust_root(), twice)


def test_forged_and_foreign_signatures_do_not_count(keys: list[Publisher],
                                                    epoch1: SignedMap) -> None:
    stranger = maintainers("m", 1)[0]  # same name as keys[0], another key
    forged = sign(next_epoch(epoch1), stranger, keys[1])
    with pytest.raises(MapError, match="signature by 'm-1' does not verify"):
        verify_next(epoch1.trust_root(), forged)
    outsider = sign(next_epoch(epoch1), maintainers("x", 1)[0], keys[1])
    with pytest.raises(MapError, match="'x-1' is not a maintainer of epoch 1"):
        verify_next(epoch1.trust_root(), outsider)


def test_signature_is_over_the_document(keys: list[Publisher], epoch1: SignedMap) -> None:
    epoch2 = sign(next_epoch(epoch1), keys[0], keys[1])
    tampered = dataclasses.replace(epoch2, document=dataclasses.replace(epoch2.document, m=0))
    with pytest.raises(MapError, match="has 0 valid signatures"):
        verify_next(epoch1.trust_root(), tampered)
    verify_next(epoch1.trust_root(), parse_signed_map(epoch2.to_bytes()))


def test_epochs_must_follow_exactly(keys: list[Publisher], epoch1: SignedMap) -> None:
    epoch2 = sign(next_epoch(epoch1), keys[0], keys[1])
    epoch3 = sign(next_epoch(epoch2), keys[0], keys[1])
    with pytest.raises(MapError, match="epoch 3 does not follow epoch 1"):
        verify_next(epoch1.trust_root(), epoch3)
    with pytest.raises(MapError, match="epoch 3 does not follow epoch 1"):
        verify_chain(epoch1.trust_root(), [epoch3])
    other2 = sign(dataclasses.replace(epoch2.document, k=1), keys[0], keys[1])
    with pytest.raises(MapError, match="names previous document"):
        verify_chain(epoch1.trust_root(), [other2, epoch3])
    with pytest.raises(MapError, match="epoch 1 does not follow epoch 1"):
        verify_next(epoch1.trust_root(), epoch1)


def test_bootstrap_checks_epoch_one(keys: list[Publisher], epoch1: SignedMap) -> None:
    with pytest.raises(MapError, match="needs 3"):
        verify_next(boot(keys, threshold=3).trust_root(), epoch1)
    with pytest.raises(MapError, match="is not a maintainer of test bootstrap"):
        verify_next(boot(maintainers("other", 3)).trust_root(), epoch1)


def test_rotation_new_maintainers_sign_the_next_epoch(keys: list[Publisher],
                                                      epoch1: SignedMap) -> None:
    new = maintainers("n", 2)
    epoch2 = sign(next_epoch(epoch1, maintainers=tuple(k.public for k in new), threshold=2),
                  keys[0], keys[1])
    verify_next(epoch1.trust_root(), epoch2)
    by_new = sign(next_epoch(epoch2), *new)
    by_old = sign(next_epoch(epoch2), *keys)
    assert verify_chain(epoch1.trust_root(), [epoch2, by_new])[-1].epoch == 3
    with pytest.raises(MapError, match="epoch 3 has 0 valid signatures of maintainers of "
                                       "epoch 2, needs 2"):
        verify_chain(epoch1.trust_root(), [epoch2, by_old])


def test_describe_signatures(keys: list[Publisher], epoch1: SignedMap) -> None:
    assert "valid (2 of the 3 maintainers of test bootstrap, threshold 2)" in \
        describe_signatures(boot(keys).trust_root(), epoch1)
    assert "NOT VALID" in describe_signatures(boot(keys, 3).trust_root(), epoch1)
    assert "not checked" in describe_signatures(None, epoch1)

"""The bottom-k sketch the audit samples with: uniform, blind to repeats, bounded."""

from __future__ import annotations

import collections
import hashlib

import pytest

from storage_network.upkeep.audit_sample import BottomSample, salted_hash


def names(count: int) -> list[str]:
    return [f"{hashlib.sha256(str(i).encode()).hexdigest()}.{i % 6}" for i in range(count)]


def test_the_sample_is_the_smallest_hashes_and_repeats_change_nothing() -> None:
    salt = b"s" * 16
    every = names(1000)
    sketch = BottomSample(20, salt)
    for name in every + every[::-1] + every[:100]:
        sketch.offer(name)
    smallest = sorted(every, key=lambda n: salted_hash(salt, n))[:20]
    assert sketch.names() == smallest
    assert len(set(sketch.names())) == 20


def test_below_its_size_it_keeps_and_counts_everything_exactly() -> None:
    sketch = BottomSample(90, b"x")
    for name in names(37) * 3:
        sketch.offer(name)
    assert sorted(sketch.names()) == sorted(names(37)) and sketch.distinct() == 37


@pytest.mark.parametrize("count", [1_000, 20_000])
def test_above_its_size_it_estimates_the_distinct_count(count: int) -> None:
    estimates = []
    for run in range(5):
        sketch = BottomSample(256, run.to_bytes(2, "big"))
        for name in names(count):
            sketch.offer(name)
        estimates.append(sketch.distinct())
    # relative error about 1/sqrt(254) = 6.3 % per run; 5 runs averaged, 25 % bound
    assert abs(sum(estimates) / len(estimates) - count) < 0.25 * count


def test_every_name_is_drawn_about_as_often_over_salts() -> None:
    population = names(50)
    drawn: collections.Counter[str] = collections.Counter()
    runs = 400
    for run in range(runs):
        sketch = BottomSample(5, run.to_bytes(4, "big"))
        for name in population:
            sketch.offer(name)
        drawn.update(sketch.names())
    # each name is drawn 400 * 5 / 50 = 40 times on average (binomial, sd about 6)
    assert min(drawn.values()) >= 15 and max(drawn.values()) <= 70
    assert len(drawn) == 50


def test_a_different_salt_draws_a_different_sample() -> None:
    population = names(500)
    samples = set()
    for salt in (b"a", b"b", b"c"):
        sketch = BottomSample(10, salt)
        for name in population:
            sketch.offer(name)
        samples.add(tuple(sketch.names()))
    assert len(samples) == 3


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BottomSample(0, b"")

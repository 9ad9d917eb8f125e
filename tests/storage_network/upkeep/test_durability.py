"""Durability figures against design.md's numbers and against a direct count."""

from __future__ import annotations

import itertools
import math

import pytest

from storage_network.upkeep.durability import (
    any_lost,
    chunk_loss,
    durability_table,
    replication_loss,
)


@pytest.mark.parametrize(("k", "m", "p", "expected"), [
    (10, 6, 0.05, 6e-6),      # design.md: 10-of-16 at p = 0.05
    (16, 24, 0.05, 6e-23),    # design.md: 16-of-40
])
def test_design_figures(k: int, m: int, p: float, expected: float) -> None:
    assert chunk_loss(k, m, p) == pytest.approx(expected, rel=0.05)


def test_replication_matches_design() -> None:
    assert replication_loss(3, 0.05) == pytest.approx(1.25e-4)


def test_chunk_loss_equals_enumeration() -> None:
    """Sum over every loss pattern of a 4-of-6 stripe, by brute force."""
    p = 0.07
    total = 0.0
    for pattern in itertools.product([0, 1], repeat=6):
        lost = sum(pattern)
        if lost > 2:
            total += p ** lost * (1 - p) ** (6 - lost)
    assert chunk_loss(4, 2, p) == pytest.approx(total, rel=1e-12)


def test_edges() -> None:
    assert chunk_loss(4, 2, 0.0) == 0.0
    assert chunk_loss(4, 2, 1.0) == pytest.approx(1.0)
    assert chunk_loss(1, 0, 0.3) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="probability"):
        chunk_loss(4, 2, 1.5)
    with pytest.raises(ValueError, match="k >= 1"):
        chunk_loss(0, 2, 0.1)


def test_any_lost_keeps_tiny_values() -> None:
    assert any_lost(1e-30, 4096) == pytest.approx(4.096e-27, rel=1e-9)
    assert any_lost(0.5, 2) == pytest.approx(0.75)
    assert any_lost(1.0, 3) == 1.0


def test_table_nar_of_one_gib() -> None:
    (row,) = durability_table(16, 24, [0.05], 1024 ** 3, 256 * 1024)
    assert row.nar == pytest.approx(4096 * row.chunk, rel=1e-6)
    assert row.replica_nar == pytest.approx(-math.expm1(4096 * math.log1p(-1.25e-4)))
    (narrow,) = durability_table(4, 2, [0.05], 1024 ** 3, 256 * 1024, nodes=6)
    assert narrow.nar == narrow.chunk  # every chunk on the same 6 nodes

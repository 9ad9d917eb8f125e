"""Chaos: any m nodes down, stopped or hostile, under concurrent readers, cost no reader anything.

8 real node processes (4-of-6, m = 2) behind a fault proxy, a gateway with no local
cache, 6 concurrent readers checking every NAR against its NarHash, and a helper that
keeps breaking up to m nodes at a time (SIGKILL and restart, SIGSTOP and SIGCONT, or a
hostile proxy mode: down, stall, deep JSON, endless or trickling answers, flipped bytes,
slow ``has``).  See tests/chaos/run.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.chaos.run import ChaosNetwork, Tally, chaos_run, narinfo_fields

from .conftest import GATEWAY_WORKERS

CHAOS_SECONDS = 40.0
CLIENTS = 6

pytestmark = pytest.mark.nix


def test_m_bad_nodes_under_load_cost_no_reader_a_byte(tmp_path: Path) -> None:
    net = ChaosNetwork(tmp_path / "chaos")
    net.local.workers = GATEWAY_WORKERS
    try:
        net.start()
        tally: Tally = asyncio.run(chaos_run(net, CHAOS_SECONDS, CLIENTS, net.m))
        gateway_peak = net.gateway_peak_rss()
        # m + 1 nodes down: the biggest path has a chunk short of k, and the gateway
        # says so before any body byte
        for number in (1, 2, 3):
            net.break_node(number, "kill")
        hash_part = Path(net.paths[0]).name.split("-", 1)[0]
        info = narinfo_fields(httpx.get(f"{net.gateway}/{hash_part}.narinfo", timeout=60).text)
        with httpx.stream("GET", f"{net.gateway}/{info['URL']}", timeout=120) as resp:
            status, body = resp.status_code, resp.read()
    finally:
        net.close()
    assert sum(tally.faults.values()) >= 5, tally.faults
    assert tally.ok >= 20, (tally.ok, tally.notes[:10])
    assert (tally.wrong, tally.truncated, dict(tally.statuses)) == (0, 0, {}), tally.notes[:10]
    assert status == 503 and body.startswith(b"error: "), (status, body[:200])
    # through endless, trickling and deep-JSON answers the gateway's memory stays bounded
    # (the largest of its processes': each worker's)
    assert gateway_peak < 300 * 1000 * 1000, gateway_peak

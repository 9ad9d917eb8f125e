"""``nixshard serve --workers 2``: two processes on one port, one disk cache, one /metrics.

Real processes: 6 nodes that send shards slowly (``trickle``), so a NAR
takes a few seconds to rebuild and requests overlap its fill; gateways with
two workers each.  Which worker answers a connection is read from /proc
(:mod:`tests.cache_server.workers_support`), never guessed from timing.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import zstandard

from nix_formats.narinfo import NarInfo
from nixshard.localnet import FAULT_ENV, ManagedProcess
from tests.support.metrics import scrape
from tests.support.trees import make_tree
from tests.support.zstd import unzstd

from .gateway_support import Gateway, Upload, make_upload, put_upload, start_gateway
from .workers_support import connections_by_worker, serving_pid, worker_pids

NAR_BYTES = 3 * 1024 * 1024  # > 2 MiB: a fill writes 1 MiB pieces, so a part file shows a piece
TRICKLE = 400_000  # bytes/s of each node's shard answers: a fill takes a few seconds
GATEWAY_ARGS = ("--hedge-after", "60", "--node-timeout", "120")  # slow nodes are not failed
LOG_LINE = re.compile(r"nixshard serve: |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} nixshard\.")


@dataclass
class Slow:
    """The network with slow nodes, the upload gateway and the uploaded path."""

    gw: Gateway
    up: Upload

    def gateway(self, name: str, *extra: str) -> ManagedProcess:
        """A fresh gateway with 2 workers and an empty cache dir ``<name>-cache``."""
        return self.gw.net.start_gateway(name, extra=(*GATEWAY_ARGS, *extra), workers=2)

    def nar_url(self, gateway: ManagedProcess) -> str:
        """The path (``nar/...``) of the uploaded NAR, as ``gateway`` names it."""
        text = httpx.get(f"{gateway.url}/{self.up.hash_part}.narinfo", timeout=120).text
        return NarInfo.parse(text).url

    def cache_dir(self, name: str) -> Path:
        return self.gw.root / f"{name}-cache"


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slow]:
    root = tmp_path_factory.mktemp("workers")
    gw = start_gateway(root)
    try:
        up = make_upload(make_tree(root, "big", NAR_BYTES, seed=5), gw.key)
        with gw.client() as client:
            nar, info = put_upload(client, up)
        assert (nar.status_code, info.status_code) == (201, 201), (nar.text, info.text)
        for number in range(1, len(gw.net.nodes) + 1):
            gw.net.restart_node(number, extra=["--fault", f"trickle={TRICKLE}"], env=FAULT_ENV)
        yield Slow(gw, up)
    finally:
        gw.net.close()


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    """``GET path`` on a kept-alive connection: status and body."""
    conn.request("GET", "/" + path.lstrip("/"))
    response = conn.getresponse()
    return response.status, response.read()


def zstd_frames(body: bytes) -> int:
    """How many zstd frames ``body`` holds (one per chunk of the NAR)."""
    count = 0
    while body:
        reader = zstandard.ZstdDecompressor().decompressobj()
        reader.decompress(body)
        assert reader.eof, "a truncated frame"
        body = reader.unused_data
        count += 1
    return count


def metric(gateway: ManagedProcess, name: str, **labels: str) -> float:
    return scrape(gateway.url, name, **labels)


def test_two_workers_answer_on_one_port(slow: Slow) -> None:
    gateway = slow.gateway("two")
    pids = worker_pids(gateway)
    assert len(pids) == 2 and gateway.proc is not None and gateway.proc.pid not in pids
    by_worker = connections_by_worker(gateway, 1)
    assert sorted(by_worker) == sorted(pids)
    for pid, (conn,) in by_worker.items():
        assert get(conn, "/nix-cache-info")[0] == 200
        assert serving_pid(conn, pids) == pid  # kept alive: the same worker answers
        conn.close()


def test_metrics_sum_the_workers(slow: Slow) -> None:
    gateway = slow.gateway("summed")
    by_worker = connections_by_worker(gateway, 3)
    asked = {pid: 0 for pid in by_worker}
    for pid, conns in by_worker.items():
        for number, conn in enumerate(conns):
            for _ in range(number + 1):  # 1 + 2 + 3 requests per worker
                assert get(conn, "/nix-cache-info")[0] == 200
                asked[pid] += 1
            conn.close()
    assert all(0 < n < sum(asked.values()) for n in asked.values())
    assert metric(gateway, "nixshard_gateway_requests_total", route="/nix-cache-info",
                  method="GET", status="200") == sum(asked.values()) == 12
    # one log: every worker's access lines in it, whole
    gateway.stop()
    lines = gateway.log_text().splitlines()
    assert all(LOG_LINE.match(line) for line in lines), lines
    assert sum('"GET /nix-cache-info HTTP/1.1" 200' in line for line in lines) == 12


def test_concurrent_cold_gets_in_both_workers_fill_once(slow: Slow) -> None:
    gateway = slow.gateway("once")
    url = slow.nar_url(gateway)
    by_worker = connections_by_worker(gateway, 2)
    conns = [conn for pair in by_worker.values() for conn in pair]
    with concurrent.futures.ThreadPoolExecutor(len(conns)) as pool:
        answers = list(pool.map(lambda conn: get(conn, url), conns))
    for conn in conns:
        conn.close()
    assert [status for status, _ in answers] == [200] * len(conns)
    assert all(unzstd(body) == slow.up.nar for _, body in answers)
    # one fill: one miss, the 3 others followed it (or hit the file once it was done),
    # and every chunk was rebuilt from the network once over both workers
    outcomes = {result: metric(gateway, "nixshard_gateway_nar_cache_total", result=result)
                for result in ("miss", "join", "hit", "bypass", "no_space")}
    assert outcomes["miss"] == 1 and outcomes["join"] + outcomes["hit"] == 3, outcomes
    assert metric(gateway, "nixshard_chunks_fetched_total") == zstd_frames(answers[0][1])
    nar = slow.cache_dir("once") / "nar"
    wait_for(lambda: [f.read_bytes() for f in nar.iterdir() if f.is_file()] == [answers[0][1]],
             "the one cache file is whole")


def test_sigterm_stops_every_worker_after_the_download_in_flight(slow: Slow) -> None:
    gateway = slow.gateway("graceful")
    url = slow.nar_url(gateway)
    pids = worker_pids(gateway)
    with httpx.Client(timeout=120) as client, client.stream("GET", f"{gateway.url}/{url}") as resp:
        assert resp.status_code == 200  # headers are out: the NAR is being rebuilt
        gateway.terminate()
        body = resp.read()
    assert unzstd(body) == slow.up.nar
    gateway.wait(timeout=60)
    assert gateway.proc is not None and gateway.proc.returncode == 0
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    log = gateway.log_text()
    assert "SIGTERM: stopping 2 workers" in log and "Traceback" not in log, log[-3000:]


def test_a_worker_killed_mid_fill_leaves_no_corrupt_entry(slow: Slow) -> None:
    gateway = slow.gateway("crash")
    url = slow.nar_url(gateway)
    fills = slow.cache_dir("crash") / "nar" / ".fills"
    by_worker = connections_by_worker(gateway, 1)
    (filler, filler_conn), (_, follower_conn) = [(pid, conns[0])
                                                 for pid, conns in by_worker.items()]
    results: dict[str, tuple[int, bytes] | BaseException] = {}

    def fetch(name: str, conn: http.client.HTTPConnection) -> None:
        try:
            results[name] = get(conn, url)
        except (OSError, http.client.HTTPException) as exc:
            results[name] = exc

    first = threading.Thread(target=fetch, args=("filler", filler_conn))
    first.start()
    wait_for(lambda: any(p.stat().st_size > 0 for p in fills.glob("*.part")),
             "the filler wrote a first piece")
    second = threading.Thread(target=fetch, args=("follower", follower_conn))
    second.start()
    wait_for(lambda: metric(gateway, "nixshard_gateway_nar_cache_total", result="join") == 1,
             "the other worker follows the fill")
    (part,) = fills.glob("*.part")
    assert 0 < part.stat().st_size < len(slow.up.body)  # mid-fill
    os.kill(filler, signal.SIGKILL)
    first.join()
    second.join()
    gateway.wait(timeout=60)
    # the supervisor saw a worker die: it stopped the other one and failed
    assert gateway.proc is not None and gateway.proc.returncode == 1
    assert f"(pid {filler}) exited unexpectedly" in gateway.log_text()
    assert isinstance(results["filler"], BaseException)  # cut off, never a clean short end
    followed = results["follower"]
    if not isinstance(followed, BaseException):  # finished from the network in time
        assert followed[0] == 200 and unzstd(followed[1]) == slow.up.nar
    assert "continuing from the network" in gateway.log_text()
    for entry in (slow.cache_dir("crash") / "nar").iterdir():  # nothing partial is served
        assert not entry.is_file() or unzstd(entry.read_bytes()) == slow.up.nar
    # the next gateway on the same cache removes the dead fill and serves the NAR whole
    again = slow.gateway("again", "--cache-dir", str(slow.cache_dir("crash")))
    body = httpx.get(f"{again.url}/{url}", timeout=120).content
    assert unzstd(body) == slow.up.nar
    nar = slow.cache_dir("crash") / "nar"
    wait_for(lambda: [f.read_bytes() for f in nar.iterdir() if f.is_file()] == [body],
             "the NAR is in the cache, whole")
    assert list(fills.iterdir()) == []


def wait_for(condition: object, what: str) -> None:
    """Wait (bounded: 120 s of 20 ms steps) until ``condition()`` holds."""
    for _ in range(6000):
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"never happened: {what}")

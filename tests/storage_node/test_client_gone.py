"""A client that goes away while a real node writes its answer (a batch-get, a shard, a
record) is not a storage error: one INFO line ``client went away ...``, no traceback, the
access line marked aborted, and the node keeps serving."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nixshard.localnet import NodeProcess
from storage_network.wire.write_auth import Publisher
from storage_node.faults import ENV_VAR

from .samples import record, record_key, signed_headers, stripe

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, publisher: Publisher) -> Iterator[NodeProcess]:
    with NodeProcess(tmp_path_factory.mktemp("gone") / "data", [publisher.public.text()]) as proc:
        yield proc


def put(url: str, publisher: Publisher, path: str, body: bytes) -> int:
    resp = httpx.put(url + path, content=body, timeout=60,
                     headers=signed_headers(publisher, "PUT", path, body))
    return resp.status_code


def read_then_reset(port: int, head: bytes, body: bytes = b"", keep: int = 256 * 1024) -> bytes:
    """Send a request, read ``keep`` bytes of the answer, then close with a reset (RST)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(head + body)
        got = b""
        while len(got) < keep:
            piece = sock.recv(65536)
            assert piece, f"the answer ended after {len(got)} bytes: {got[:300]!r}"
            got += piece
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
    return got


def wait_for_log(node: NodeProcess, text: str, count: int = 1) -> str:
    deadline = time.monotonic() + 30
    while node.log_text().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged; tail:\n{node.log_tail()}"
        time.sleep(0.05)
    return node.log_text()


def assert_no_error_logged(log: str) -> None:
    for bad in ("Traceback", "storage error", "Error handling request", "internal error",
                " ERROR "):
        assert bad not in log, f"{bad!r} in the node's log:\n{log[-3000:]}"


def test_client_gone_during_batch_get(node: NodeProcess, publisher: Publisher) -> None:
    shards = stripe(n=3, size=2 * MiB)
    for sid, body in shards:
        assert put(node.url, publisher, f"/shards/{sid}", body) == 201
    ids = [sid for sid, _ in shards] * 50  # a 300 MiB answer
    payload = json.dumps({"ids": ids}).encode()
    head = (f"POST /shards/batch-get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode()
    got = read_then_reset(node.port, head, payload)
    assert got.startswith(b"HTTP/1.1 200 ")
    log = wait_for_log(node, "client went away during POST '/shards/batch-get'")
    line = next(x for x in log.splitlines() if "client went away" in x)
    assert " INFO nixshard.node: " in line
    wait_for_log(node, '"POST /shards/batch-get HTTP/1.1" 200 ')
    log = wait_for_log(node, "aborted (client gone)")
    assert_no_error_logged(log)
    assert log.count("client went away") == 1
    assert httpx.get(f"{node.url}/shards/{shards[0][0]}").content == shards[0][1]


def test_client_gone_during_a_shard(node: NodeProcess, publisher: Publisher) -> None:
    (sid, body), = stripe(n=1, size=24 * MiB)  # more than the socket buffers hold
    assert put(node.url, publisher, f"/shards/{sid}", body) == 201
    before = node.log_text().count("client went away")
    got = read_then_reset(node.port, f"GET /shards/{sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert got.startswith(b"HTTP/1.1 200 ")
    log = wait_for_log(node, f"client went away during GET '/shards/{sid}'")
    assert log.count("client went away") == before + 1
    assert_no_error_logged(log)
    assert httpx.get(f"{node.url}/shards/{sid}").content == body


@pytest.mark.parametrize("fault", ["trickle=50", "endless"])
def test_client_gone_during_a_record(tmp_path: Path, publisher: Publisher,
                                     monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    """A record is one small write unless the node is slow (trickle) or hostile (endless)."""
    monkeypatch.setenv(ENV_VAR, "1")
    with NodeProcess(tmp_path / "data", [publisher.public.text()],
                     extra_args=["--fault", fault]) as proc:
        key = record_key()
        assert put(proc.url, publisher, f"/records/{key}", record(publisher, key)) == 201
        got = read_then_reset(proc.port, f"GET /records/{key} HTTP/1.1\r\nHost: x\r\n\r\n"
                              .encode(), keep=200)
        assert got.startswith(b"HTTP/1.1 200 ")
        log = wait_for_log(proc, f"client went away during GET '/records/{key}'")
        assert_no_error_logged(log)
        assert httpx.get(f"{proc.url}/healthz").status_code == 200

"""A real ``python -m storage_node`` process: HTTP round trips, traversal, truncation, restarts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nixshard.localnet import NodeProcess, free_port, start_nodes, stop_all
from storage_network.wire.write_auth import Publisher

from .samples import record, record_key, signed_headers, stripe

SECRET = b"TOP-SECRET-MARKER"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, publisher: Publisher) -> Iterator[NodeProcess]:
    """One node process shared by this module's tests, with secrets planted around its data."""
    base = tmp_path_factory.mktemp("proc")
    for name in ("secret", "passwd"):
        (base / name).write_bytes(SECRET)
    with NodeProcess(base / "data", [publisher.public.text()], node_id="node-1") as proc:
        yield proc


def put(url: str, publisher: Publisher, path: str, body: bytes) -> httpx.Response:
    return httpx.put(url + path, content=body,
                     headers=signed_headers(publisher, "PUT", path, body))


def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send exactly ``head`` + ``body``; return the status and response body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def health(node: NodeProcess) -> dict[str, object]:
    return httpx.get(f"{node.url}/healthz").json()  # type: ignore[no-any-return]


def test_round_trip_over_http(node: NodeProcess, publisher: Publisher) -> None:
    before = health(node)
    assert before["node_id"] == "node-1"
    (sid, body), (absent, _), *_ = stripe()
    assert put(node.url, publisher, f"/shards/{sid}", body).status_code == 201
    assert put(node.url, publisher, f"/shards/{sid}", body).status_code == 200
    resp = httpx.get(f"{node.url}/shards/{sid}")
    assert (resp.status_code, resp.content) == (200, body)
    assert resp.headers["Content-Type"] == "application/octet-stream"
    resp = httpx.head(f"{node.url}/shards/{sid}")
    assert (resp.status_code, resp.headers["Content-Length"]) == (200, str(len(body)))
    resp = httpx.post(f"{node.url}/shards/has", json={"ids": [absent, sid]})
    assert resp.json() == {"present": [sid]}

    key = record_key()
    sealed = record(publisher, key)
    assert put(node.url, publisher, f"/records/{key}", sealed).status_code == 201
    assert httpx.get(f"{node.url}/records/{key}").content == sealed

    after = health(node)
    assert after["shards"] == before["shards"] + 1  # type: ignore[operator]
    assert after["shard_bytes"] == before["shard_bytes"] + len(body)  # type: ignore[operator]
    assert after["records"] == before["records"] + 1  # type: ignore[operator]


TRAVERSALS = [
    "/shards/..%2F..%2Fsecret", "/shards/%2e%2e%2f%2e%2e%2fsecret", "/shards/../../secret",
    "/shards/%2e%2e/%2e%2e/secret", "/shards/..", "/shards/%2e%2e", "/shards/ab%2F..%2F..%2Flock",
    "/records/..%2Fsecret", "/records/..%2F..%2Fsecret", "/records/%2e%2e%2F%2e%2e%2Fsecret",
    "/records/../../secret", "/records/%2E%2E", "/records/..%5C..%5Csecret",
    "/shards/..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/healthz/../../secret",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_never_reads_outside_data(node: NodeProcess, publisher: Publisher,
                                            path: str) -> None:
    outside_before = sorted(p.name for p in node.data_dir.parent.iterdir())
    for method in ("GET", "HEAD"):
        status, body = raw_request(
            node.port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert status in (400, 404), (method, path, status, body)
        assert SECRET not in body
    payload = b"overwrite?"
    headers = "".join(f"{k}: {v}\r\n" for k, v in
                      signed_headers(publisher, "PUT", path, payload).items())
    status, body = raw_request(node.port, (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}"
        f"Content-Length: {len(payload)}\r\n\r\n").encode(), payload)
    assert status in (400, 404), (path, status, body)
    assert sorted(p.name for p in node.data_dir.parent.iterdir()) == outside_before
    assert (node.data_dir.parent / "secret").read_bytes() == SECRET


def test_truncated_body_leaves_nothing(node: NodeProcess, publisher: Publisher) -> None:
    (sid, _), *_ = stripe()
    headers = "".join(f"{k}: {v}\r\n" for k, v in
                      signed_headers(publisher, "PUT", f"/shards/{sid}", b"\0" * 100_000).items())
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall((f"PUT /shards/{sid} HTTP/1.1\r\nHost: x\r\n{headers}"
                      "Content-Length: 100000\r\n\r\n").encode() + b"0123456789")
        time.sleep(0.1)
    deadline = time.monotonic() + 10
    while f"{sid}' from 127.0.0.1: 400 shard body truncated" not in node.log_text():
        assert time.monotonic() < deadline, (
            f"no truncation logged; log {node.log_path} exists: {node.log_path.exists()}, "
            f"node running: {node.running}, tail:\n{node.log_tail()}")
        time.sleep(0.05)
    assert "the client sent 10 of 100000 bytes" in node.log_text()
    assert list((node.data_dir / "tmp").iterdir()) == []
    assert not (node.data_dir / "shards" / sid[:2] / sid).exists()
    assert httpx.get(f"{node.url}/shards/{sid}").status_code == 404


def test_data_persists_across_restarts(tmp_path: Path, publisher: Publisher) -> None:
    shards = stripe(n=3)
    key = record_key()
    sealed = record(publisher, key)
    with NodeProcess(tmp_path / "data", [publisher.public.text()],
                     extra_args=["--max-shard-bytes", "4096"]) as proc:
        for sid, body in shards:
            assert put(proc.url, publisher, f"/shards/{sid}", body).status_code == 201
        assert put(proc.url, publisher, f"/records/{key}", sealed).status_code == 201
        big = put(proc.url, publisher, f"/shards/{shards[0][0]}", b"\0" * 5000)
        assert big.status_code == 413
        assert big.text == "error: shard body of 5000 bytes exceeds the limit of 4096 bytes"
        expected = health(proc)

        proc.restart()
        assert health(proc)["shards"] == 3
        proc.kill()
        proc.start().wait_ready()
        got = health(proc)
        for field in ("shards", "shard_bytes", "records"):
            assert got[field] == expected[field]
        for sid, body in shards:
            assert httpx.get(f"{proc.url}/shards/{sid}").content == body
        assert httpx.get(f"{proc.url}/records/{key}").content == sealed
    assert proc.proc is not None and proc.proc.returncode == 0
    assert "node node-1 stopped" in proc.log_tail(1)


def test_start_nodes_starts_several_at_once(tmp_path: Path, publisher: Publisher) -> None:
    started = time.monotonic()
    nodes = start_nodes(tmp_path, 3, [publisher.public.text()])
    try:
        assert time.monotonic() - started < 15
        assert [n.node_id for n in nodes] == ["node-1", "node-2", "node-3"]
        assert len({n.url for n in nodes}) == 3
        for n in nodes:
            assert health(n)["node_id"] == n.node_id
            assert n.log_path == tmp_path / f"{n.node_id}.log"
    finally:
        stop_all(nodes)
    assert [n.proc.returncode for n in nodes if n.proc] == [0, 0, 0]
    assert all("stopped" in n.log_tail(1) for n in nodes)


def test_cli_refuses_to_start_without_publisher_keys(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "storage_node", "--data", str(tmp_path / "data"),
         "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "no publisher key given" in proc.stderr
    assert "--accept-publisher" in proc.stderr
    assert not (tmp_path / "data").exists()

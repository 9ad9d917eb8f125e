"""A real node process stays under 200 MB of peak RSS (VmHWM) while 8 writers send 60 MiB
bodies at once: unsigned ones (refused before any body byte is read), and signed-looking
ones with a bad signature (valid headers, the right node id: read, within the node's body
budget, then refused)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from nixshard.localnet import NodeProcess
from storage_network.wire.write_auth import Publisher

from .samples import record_key, signed_headers, stripe

MiB = 1024 * 1024
BODY_BYTES = 60 * MiB
WRITERS = 8
PEAK_RSS_LIMIT = 200 * 1000 * 1000  # bytes


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, publisher: Publisher) -> Iterator[NodeProcess]:
    with NodeProcess(tmp_path_factory.mktemp("memory") / "data",
                     [publisher.public.text()]) as proc:
        yield proc


def send(port: int, method: str, path: str, headers: dict[str, str], body: memoryview
         ) -> int | None:
    """Send one request with ``body`` (Content-Length set); the answer's status, or None when
    the node closed the connection before answering."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        try:
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{head}"
                         f"Content-Length: {len(body)}\r\n\r\n".encode())
            for start in range(0, len(body), MiB):
                sock.sendall(body[start:start + MiB])
        except OSError:
            pass  # refused early and closed: the answer may still be readable
        answer = b""
        try:
            while b"\r\n" not in answer:
                piece = sock.recv(4096)
                if not piece:
                    return None
                answer += piece
        except OSError:
            return None
    return int(answer.split()[1])


def targets() -> list[tuple[str, str]]:
    """(method, path) of the 8 writes: shard PUTs, batch-puts and record PUTs."""
    shard_ids = [sid for sid, _ in stripe(n=3)]
    return ([("PUT", f"/shards/{sid}") for sid in shard_ids]
            + [("POST", "/shards/batch-put")] * 3
            + [("PUT", f"/records/{record_key()}") for _ in range(2)])


def run_all(node: NodeProcess, make_headers: Callable[[str, str], dict[str, str]]
            ) -> list[int | None]:
    body = memoryview(bytes(BODY_BYTES))  # one buffer shared by the writers
    statuses: list[int | None] = [None] * WRITERS
    start = threading.Barrier(WRITERS)

    def writer(number: int, method: str, path: str) -> None:
        headers = make_headers(method, path)
        start.wait()
        statuses[number] = send(node.port, method, path, headers, body)

    threads = [threading.Thread(target=writer, args=(i, m, p))
               for i, (m, p) in enumerate(targets())]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
        assert not thread.is_alive()
    return statuses


def assert_nothing_stored(node: NodeProcess) -> None:
    assert list((node.data_dir / "tmp").iterdir()) == []
    assert list((node.data_dir / "records").iterdir()) == []
    assert not any(p.is_file() for p in (node.data_dir / "shards").rglob("*"))


def test_unsigned_bodies_do_not_grow_the_node(node: NodeProcess) -> None:
    statuses = run_all(node, lambda method, path: {})
    assert set(statuses) <= {401, None} and 401 in statuses, statuses
    peak = node.peak_rss()
    print(f"peak RSS after {WRITERS} unsigned {BODY_BYTES // MiB} MiB bodies: "
          f"{peak / MiB:.1f} MiB")
    assert peak < PEAK_RSS_LIMIT
    assert_nothing_stored(node)


def test_bodies_with_a_bad_signature_stay_within_the_budget(node: NodeProcess,
                                                            publisher: Publisher) -> None:
    def forged(method: str, path: str) -> dict[str, str]:
        # valid headers for this node, signed over another body: refused once read
        return signed_headers(publisher, method, path, b"another body", node_id=node.node_id)

    statuses = run_all(node, forged)
    # 403 once read; 503 for those that found no room in the body budget in time
    assert set(statuses) <= {403, 503, None} and 403 in statuses, statuses
    peak = node.peak_rss()
    print(f"peak RSS after {WRITERS} badly signed {BODY_BYTES // MiB} MiB bodies: "
          f"{peak / MiB:.1f} MiB (statuses {sorted(statuses, key=str)})")
    assert peak < PEAK_RSS_LIMIT
    assert_nothing_stored(node)

"""The daemon's HTTP answers, good and bad, against real node processes."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx
import pytest
import zstandard

from nix_formats.hash import parse_nix_hash
from nix_formats.narinfo import NarInfo
from storage_network.client import NetworkClient
from storage_network.wire.manifest import Manifest
from storage_network.wire.write_auth import Publisher
from storage_network.write.publish import publish_record
from tests.support.metrics import scrape

from .conftest import Served


def get(s: Served, path: str) -> httpx.Response:
    return httpx.get(s.url + path, timeout=30)


def narinfo_of(s: Served) -> NarInfo:
    resp = get(s, f"/{s.info.store_path.hash_part}.narinfo")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/x-nix-narinfo")
    return NarInfo.parse(resp.text)


def test_nix_cache_info(served: Served) -> None:
    resp = get(served, "/nix-cache-info")
    assert resp.status_code == 200
    assert resp.text.splitlines() == ["StoreDir: /nix/store", "WantMassQuery: 1", "Priority: 30"]


def test_narinfo_and_nar_round_trip(served: Served) -> None:
    info = narinfo_of(served)
    assert info.store_path == served.info.store_path
    assert info.compression == "zstd"
    assert info.sigs and info.sigs[0].startswith("http-tests-1:")
    resp = get(served, "/" + info.url)
    assert resp.status_code == 200
    assert int(resp.headers["content-length"]) == len(resp.content) == info.file_size
    assert "content-encoding" not in resp.headers
    dec = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    nar = dec.decompress(resp.content)
    assert len(nar) == info.nar_size
    assert hashlib.sha256(nar).digest() == parse_nix_hash(info.nar_hash)[1]


def test_head_has_no_body(served: Served) -> None:
    info = narinfo_of(served)
    head = httpx.head(served.url + "/" + info.url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == info.file_size
    assert httpx.head(f"{served.url}/{served.info.store_path.hash_part}.narinfo").status_code == 200


def test_absent_path_is_404(served: Served) -> None:
    resp = get(served, "/" + "0" * 32 + ".narinfo")
    assert resp.status_code == 404
    assert "absent on" in resp.text


@pytest.mark.parametrize("name", [
    "e" * 32,                     # 'e' is not in the nix32 alphabet
    "u" * 32, "0" * 31, "0" * 33, "A" * 32,
])
def test_bad_store_path_hash_is_400(served: Served, name: str) -> None:
    resp = get(served, f"/{name}.narinfo")
    assert resp.status_code == 400
    assert resp.text.startswith("error:")


@pytest.mark.parametrize("path", [
    "/nar/..%2F..%2Fetc%2Fpasswd",
    "/nar/%2e%2e%2f%2e%2e%2fetc%2fpasswd.nar.zst",
    "/nar/..%2f" + "0" * 32 + ".narinfo",
    "/nar/x.nar.zst",
])
def test_nar_traversal_and_bad_names_are_400(served: Served, path: str) -> None:
    resp = get(served, path)
    assert resp.status_code == 400
    assert "bad NAR file name" in resp.text


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                                  "/nar/../../etc/passwd"])
def test_traversal_outside_routes_never_reads_files(served: Served, path: str) -> None:
    resp = get(served, path)
    assert resp.status_code in (400, 404)
    assert "root:" not in resp.text


def test_other_nar_of_existing_path_is_404(served: Served) -> None:
    hash_part = served.info.store_path.hash_part
    resp = get(served, f"/nar/{hash_part}-{'0' * 52}.nar.zst")
    assert resp.status_code == 404
    assert "has NAR" in resp.text


def _publish(s: Served, publisher: Publisher, key: str, metadata: bytes) -> None:
    assert s.net.network is not None
    network = s.net.network

    async def run() -> None:
        async with NetworkClient(network) as net:
            empty = Manifest("isa_l_rs_cauchy", 4, 2, ())
            await publish_record(net, publisher, key, metadata, empty)

    asyncio.run(run())


def test_signed_record_with_malformed_narinfo_is_502(served: Served) -> None:
    key = "1" * 32
    _publish(served, served.net.publisher, key, b"StorePath: not a store path\n")
    resp = get(served, f"/{key}.narinfo")
    assert resp.status_code == 502
    assert "malformed narinfo" in resp.text


def test_record_for_another_path_is_502(served: Served) -> None:
    key = "2" * 32
    text = narinfo_of(served).render().encode()
    _publish(served, served.net.publisher, key, text)
    resp = get(served, f"/{key}.narinfo")
    assert resp.status_code == 502
    assert "describes" in resp.text


def test_record_signed_by_unknown_key_is_refused(own_served: Served) -> None:
    """A forged record planted on every node's disk is never served."""
    from nixshard.localnet import new_publisher
    from storage_network.wire.record import seal_record

    stranger, _ = new_publisher("stranger-1")
    key = own_served.info.store_path.hash_part
    text = narinfo_of(own_served).render().encode()
    forged = seal_record(stranger, key, text, Manifest("isa_l_rs_cauchy", 4, 2, ()))
    own_served.net.close()
    for node in own_served.net.nodes:
        (own_served.net.root / node.name / "records" / key).write_bytes(forged)
        node.start()
        node.wait_ready()
    own_served.net.daemon.start()  # type: ignore[union-attr]
    own_served.net.daemon.wait_ready()  # type: ignore[union-attr]
    resp = get(own_served, f"/{key}.narinfo")
    assert resp.status_code == 404
    log = (own_served.net.root / "serve.log").read_text()
    assert "served a bad record" in log and "untrusted key 'stranger-1'" in log


def test_too_few_nodes_is_503_before_body(own_served: Served) -> None:
    info = narinfo_of(own_served)
    for node in own_served.net.nodes[:3]:
        node.kill()
    resp = get(own_served, "/" + info.url)
    assert resp.status_code == 503
    assert resp.text.startswith("error: chunk 0 of")


def test_failure_after_headers_aborts_the_connection(own_served: Served) -> None:
    """Shards that exist but are corrupt on m+1 nodes: the plan passes, the body cannot."""
    info = narinfo_of(own_served)
    for node in own_served.net.nodes[:3]:
        for path in (own_served.net.root / node.name / "shards").rglob("*"):
            if path.is_file():
                data = bytearray(path.read_bytes())
                data[-1] ^= 0xFF
                path.write_bytes(bytes(data))
    received = 0
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):  # noqa: PT012
        with httpx.stream("GET", own_served.url + "/" + info.url, timeout=30) as resp:
            assert resp.status_code == 200
            for piece in resp.iter_raw():
                received += len(piece)
    assert received < (info.file_size or 0)
    # one log line, no traceback; the access log and the metrics say 200, aborted
    route = "/nar/{file}"
    assert scrape(own_served.url, "nixshard_gateway_aborted_total", route=route) == 1
    assert scrape(own_served.url, "nixshard_gateway_requests_total", route=route,
                  method="GET", status="200") == 1
    assert scrape(own_served.url, "nixshard_gateway_requests_total", route=route,
                  method="GET", status="503") == 0
    access: list[str] = []
    for _ in range(200):  # access lines are written in batches, at least once a second
        log = (own_served.net.root / "serve.log").read_text()
        access = [line for line in log.splitlines() if f'"GET /{info.url} ' in line]
        if access:
            break
        time.sleep(0.05)
    assert "Traceback" not in log and "Error handling request" not in log
    assert log.count("aborting the transfer after") == 1
    assert len(access) == 1 and '" 200 ' in access[0]
    assert access[0].endswith("aborted (source failed)")

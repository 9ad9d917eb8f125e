"""The gateway serving: Range, HEAD, the local disk cache, build logs, listings, metrics,
health; against real node and gateway processes (uploads: test_gateway_uploads.py)."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import httpx

from nix_formats.nar_listing import LISTING_VERSION, render_listing
from nix_formats.nar_parser import NarParser
from nix_formats.narinfo import NarInfo
from tests.support.metrics import scrape
from tests.support.trees import make_tree
from tests.support.zstd import unzstd

from .gateway_support import Gateway, Upload, make_upload, nar_of, put_upload, start_gateway

# -- Range, HEAD, local disk cache -------------------------------------------------------

def test_range_requests_cold_and_hot(gw: Gateway, stored: Upload) -> None:
    info, whole = nar_of(gw.url, stored.hash_part)  # this made it hot
    url = f"{gw.url}/{info.url}"
    head = httpx.head(url, timeout=30)
    assert head.headers["Accept-Ranges"] == "bytes"
    assert int(head.headers["Content-Length"]) == len(whole)
    for spec, want in (("bytes=100-199", whole[100:200]), ("bytes=-50", whole[-50:]),
                       (f"bytes={len(whole) - 10}-", whole[-10:])):
        resp = httpx.get(url, headers={"Range": spec}, timeout=30)
        assert resp.status_code == 206, spec
        assert resp.content == want, spec
        assert resp.headers["Content-Range"].endswith(f"/{len(whole)}")
    bad = httpx.get(url, headers={"Range": f"bytes={len(whole)}-"}, timeout=30)
    assert bad.status_code == 416


def test_range_on_a_gateway_without_disk_cache(gw: Gateway, stored: Upload) -> None:
    g2 = gw.net.start_gateway("nocache", extra=("--cache-max-bytes", "0"))
    info, whole = nar_of(gw.url, stored.hash_part)
    half = len(whole) // 2
    resp = httpx.get(f"{g2.url}/{info.url}", headers={"Range": f"bytes={half}-"}, timeout=30)
    assert resp.status_code == 206
    assert resp.content == whole[half:]
    mid = httpx.get(f"{g2.url}/{info.url}", headers={"Range": "bytes=5000-5099"}, timeout=30)
    assert mid.content == whole[5000:5100]


def test_concurrent_cold_requests_fetch_once_and_the_cache_survives_restart(
        gw: Gateway, stored: Upload) -> None:
    g2 = gw.net.start_gateway("fresh")
    info = NarInfo.parse(httpx.get(f"{g2.url}/{stored.hash_part}.narinfo", timeout=30).text)

    def fetch(_: int) -> bytes:
        return httpx.get(f"{g2.url}/{info.url}", timeout=60).content

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        bodies = list(pool.map(fetch, range(6)))
    assert all(unzstd(b) == stored.nar for b in bodies)
    # fetched from the network once: the others joined the fill or, once it was done, hit
    # the file (which of the two depends on timing; tests/cache_server/test_nar_cache.py
    # shows joins deterministically)
    assert scrape(g2.url, "nixshard_gateway_nar_cache_total", result="miss") == 1
    assert scrape(g2.url, "nixshard_gateway_nar_cache_total", result="join") \
        + scrape(g2.url, "nixshard_gateway_nar_cache_total", result="hit") == 5
    # after a restart the NAR is served from disk
    g2.stop()
    g3 = gw.net.start_gateway("fresh-again", extra=("--cache-dir",
                                                    str(gw.root / "fresh-cache")))
    assert unzstd(httpx.get(f"{g3.url}/{info.url}", timeout=60).content) == stored.nar
    assert scrape(g3.url, "nixshard_gateway_nar_cache_total", result="hit") == 1


def test_lru_eviction_keeps_the_cache_under_its_cap(gw: Gateway, tmp_path: Path) -> None:
    ups = [make_upload(make_tree(tmp_path, f"lru{i}", 60_000, seed=10 + i), gw.key)
           for i in range(3)]
    with gw.client() as c:
        for up in ups:
            assert put_upload(c, up)[1].status_code == 201
    sizes = [len(nar_of(gw.url, up.hash_part)[1]) for up in ups]
    cap = max(sizes) * 2 + 10  # room for two of the three
    g2 = gw.net.start_gateway("small", extra=("--cache-max-bytes", str(cap)))
    for up in ups:
        info = NarInfo.parse(httpx.get(f"{g2.url}/{up.hash_part}.narinfo", timeout=30).text)
        assert unzstd(httpx.get(f"{g2.url}/{info.url}", timeout=60).content) == up.nar
    files = sorted(f for f in (gw.root / "small-cache" / "nar").iterdir() if f.is_file())
    assert sum(f.stat().st_size for f in files) <= cap
    assert len(files) == 2
    assert not any(f.name.startswith(ups[0].hash_part) for f in files)  # least recent went


# -- logs, listings, metrics, health -----------------------------------------------------

DRV = "0123456789abcdfghijklmnpqrsvwxyz-hello.drv"


def test_build_log_put_and_get(gw: Gateway) -> None:
    text = "".join(f"line {i}: building\n" for i in range(20_000)).encode()
    with gw.client() as c:
        assert c.get(f"/log/{DRV}").status_code == 404
        assert c.put(f"/log/{DRV}", content=text).status_code == 201
        got = c.get(f"/log/{DRV}")
        assert got.status_code == 200 and got.content == text
        assert got.headers["Content-Type"].startswith("text/plain")
        assert c.get("/log/not-a-drv").status_code == 400
    resp = httpx.put(f"{gw.url}/log/{DRV}", content=b"x", timeout=30)
    assert resp.status_code == 401


def test_nar_listing_matches_the_nar(gw: Gateway, stored: Upload) -> None:
    resp = httpx.get(f"{gw.url}/{stored.hash_part}.ls", timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    parser = NarParser(compute_sha256=False, listing=True)
    parser.feed(stored.nar)
    parser.finish()
    assert resp.content == render_listing({"version": LISTING_VERSION, "root": parser.listing})
    assert resp.json()["root"]["entries"]["data"]["size"] == 300_000
    again = httpx.get(f"{gw.url}/{stored.hash_part}.ls", timeout=30)
    assert again.content == resp.content
    assert httpx.get(f"{gw.url}/{'0' * 32}.ls", timeout=30).status_code == 404


def test_metrics_move_with_requests(gw: Gateway, stored: Upload) -> None:
    route = "/{hash}.narinfo"
    before_ok = gw.metric("nixshard_gateway_requests_total", route=route, method="GET",
                          status="200")
    before_404 = gw.metric("nixshard_gateway_requests_total", route=route, method="GET",
                           status="404")
    for _ in range(3):
        httpx.get(f"{gw.url}/{stored.hash_part}.narinfo", timeout=30)
    httpx.get(f"{gw.url}/{'1' * 32}.narinfo", timeout=30)
    assert gw.metric("nixshard_gateway_requests_total", route=route, method="GET",
                     status="200") == before_ok + 3
    assert gw.metric("nixshard_gateway_requests_total", route=route, method="GET",
                     status="404") == before_404 + 1
    sent = gw.metric("nixshard_gateway_bytes_sent_total", route="/nar/{file}")
    info, body = nar_of(gw.url, stored.hash_part)
    assert gw.metric("nixshard_gateway_bytes_sent_total", route="/nar/{file}") == sent + len(body)
    assert gw.metric("nixshard_gateway_uploads_total", outcome="stored") >= 1
    assert gw.metric("nixshard_chunks_fetched_total") > 0


def test_hot_nar_is_counted_without_errors(gw: Gateway, stored: Upload) -> None:
    """A NAR sent from the disk cache (FileResponse, sendfile) is counted once per answer,
    200 and 206 alike, and logs no error."""
    hot = gw.net.start_gateway("hot")
    info = NarInfo.parse(httpx.get(f"{hot.url}/{stored.hash_part}.narinfo", timeout=30).text)
    first = httpx.get(f"{hot.url}/{info.url}", timeout=60)  # cold: fills the cache
    assert first.status_code == 200
    cached = gw.root / "hot-cache" / "nar"
    deadline = time.monotonic() + 30
    while not any(cached.glob(f"{stored.hash_part}-*")):  # the fill ends just after the body
        assert time.monotonic() < deadline, "the NAR never reached the disk cache"
        time.sleep(0.05)

    def metric(name: str, **labels: str) -> float:
        return scrape(hot.url, name, **labels)

    route = "/nar/{file}"
    hits = metric("nixshard_gateway_nar_cache_total", result="hit")
    ok = metric("nixshard_gateway_requests_total", route=route, method="GET", status="200")
    partial = metric("nixshard_gateway_requests_total", route=route, method="GET", status="206")
    timed = metric("nixshard_gateway_request_seconds_count", route=route, method="GET")
    sent = metric("nixshard_gateway_bytes_sent_total", route=route)

    full = httpx.get(f"{hot.url}/{info.url}", timeout=60)
    assert full.status_code == 200 and full.content == first.content
    part = httpx.get(f"{hot.url}/{info.url}", headers={"Range": "bytes=100-1099"}, timeout=60)
    assert part.status_code == 206 and part.content == first.content[100:1100]

    assert metric("nixshard_gateway_nar_cache_total", result="hit") == hits + 2  # sendfile
    assert metric("nixshard_gateway_requests_total", route=route, method="GET",
                  status="200") == ok + 1
    assert metric("nixshard_gateway_requests_total", route=route, method="GET",
                  status="206") == partial + 1
    assert metric("nixshard_gateway_request_seconds_count", route=route,
                  method="GET") == timed + 2
    assert metric("nixshard_gateway_bytes_sent_total", route=route) == sent + len(
        first.content) + 1000
    log = (gw.root / "hot.log").read_text()
    assert "Error handling request" not in log and "Traceback" not in log, log[-3000:]


def test_healthz_and_read_auth(tmp_path: Path) -> None:
    g = start_gateway(tmp_path, "--read-auth", name="private")
    try:
        assert httpx.get(f"{g.url}/healthz", timeout=30).json()["status"] == "ok"
        assert httpx.get(f"{g.url}/nix-cache-info", timeout=30).status_code == 401
        with g.client() as c:
            assert c.get("/nix-cache-info").status_code == 200
    finally:
        g.net.close()


def test_head_answers_wherever_get_does(gw: Gateway, stored: Upload) -> None:
    info, _ = nar_of(gw.url, stored.hash_part)
    for path in ("/nix-cache-info", f"/{stored.hash_part}.narinfo", f"/{stored.hash_part}.ls",
                 f"/{info.url}", "/healthz", "/metrics", "/nixshard/nodes"):
        head = httpx.head(gw.url + path, timeout=30)
        assert head.status_code == 200, path
        assert head.content == b"", path
    assert httpx.head(f"{gw.url}/{'2' * 32}.narinfo", timeout=30).status_code == 404

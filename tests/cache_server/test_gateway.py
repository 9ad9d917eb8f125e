"""The gateway: uploads (auth, checks, nothing visible on rejection), Range, local disk
cache, logs, listings, metrics, health; against real node and gateway processes."""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
from pathlib import Path

import httpx
import pytest

from nix_formats.hash import parse_nix_hash
from nix_formats.nar_listing import LISTING_VERSION, render_listing
from nix_formats.nar_parser import NarParser
from nix_formats.narinfo import NarInfo
from nixshard.localnet import new_publisher
from tests.support.metrics import scrape
from tests.support.network import running_network
from tests.support.trees import make_tree
from tests.support.zstd import unzstd

from .gateway_support import (
    PASSWORD,
    USER,
    Gateway,
    Upload,
    basic,
    make_upload,
    nar_of,
    put_upload,
    start_gateway,
)


@pytest.fixture(scope="module")
def stored(gw: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Upload:
    """One path uploaded through the gateway (about 300 KB NAR, many chunks)."""
    up = make_upload(make_tree(tmp_path_factory.mktemp("t"), "stored", 300_000), gw.key)
    with gw.client() as c:
        nar, info = put_upload(c, up)
    assert nar.status_code == 201, nar.text
    assert info.status_code == 201, info.text
    return up


def absent(gw: Gateway, up: Upload) -> bool:
    return httpx.get(f"{gw.url}/{up.hash_part}.narinfo", timeout=30).status_code == 404


# -- uploads ---------------------------------------------------------------------------

def test_upload_is_served_back_with_the_gateways_nar_url(gw: Gateway, stored: Upload) -> None:
    info, body = nar_of(gw.url, stored.hash_part)
    assert info.url.startswith(f"nar/{stored.hash_part}-") and info.compression == "zstd"
    assert info.file_hash is None and info.file_size == len(body)
    assert info.sigs == stored.narinfo.sigs  # Nix's Sig is end to end
    nar = unzstd(body)
    assert nar == stored.nar
    assert parse_nix_hash(info.nar_hash)[1] == hashlib.sha256(nar).digest()


def test_upload_of_a_stored_path_answers_200_and_stores_nothing(gw: Gateway,
                                                                stored: Upload) -> None:
    with gw.client() as c:
        nar, info = put_upload(c, stored)
    assert (nar.status_code, info.status_code) == (201, 200)
    assert "exists" in info.text
    with gw.client() as c:  # its staged copy is dropped too
        assert c.head(f"/nar/{stored.nar_name}").status_code == 404


def test_upload_without_credentials_is_401_and_stores_nothing(gw: Gateway,
                                                              tmp_path: Path) -> None:
    up = make_upload(make_tree(tmp_path, "noauth", 5000), gw.key)
    with gw.client(auth=False) as c:
        nar, info = put_upload(c, up)
    assert nar.status_code == 401 and info.status_code == 401
    assert nar.headers["WWW-Authenticate"].startswith("Basic")
    assert absent(gw, up)
    assert httpx.head(f"{gw.url}/nar/{up.nar_name}", timeout=30).status_code == 404


def test_wrong_password_and_unknown_user_are_401(gw: Gateway) -> None:
    for user, password in ((USER, "wrong"), ("nobody", PASSWORD)):
        resp = httpx.put(f"{gw.url}/nix-cache-info", content=b"StoreDir: /nix/store\n",
                         headers=basic(user, password), timeout=30)
        assert resp.status_code == 401, (user, resp.text)
    ok = httpx.put(f"{gw.url}/nix-cache-info", content=b"StoreDir: /nix/store\n",
                   headers=basic(USER, PASSWORD), timeout=30)
    assert ok.status_code == 200
    other = httpx.put(f"{gw.url}/nix-cache-info", content=b"StoreDir: /gnu/store\n",
                      headers=basic(USER, PASSWORD), timeout=30)
    assert other.status_code == 400


def test_staged_nar_answers_head_200_and_is_not_served(gw: Gateway, tmp_path: Path) -> None:
    up = make_upload(make_tree(tmp_path, "staged", 5000), gw.key)
    with gw.client() as c:
        assert c.put(f"/nar/{up.nar_name}", content=up.body).status_code == 201
        assert c.head(f"/nar/{up.nar_name}").status_code == 200
        assert c.get(f"/nar/{up.nar_name}").status_code == 404
    assert absent(gw, up)


def test_nar_body_not_matching_its_name_is_400(gw: Gateway, tmp_path: Path) -> None:
    up = make_upload(make_tree(tmp_path, "badbody", 5000), gw.key)
    with gw.client() as c:
        resp = c.put(f"/nar/{up.nar_name}", content=up.body[:-1] + b"\0")
        assert resp.status_code == 400 and "sha256" in resp.text
        assert c.head(f"/nar/{up.nar_name}").status_code == 404
        assert c.put(f"/nar/{up.nar_name[:-4]}.tar", content=b"x").status_code == 400


def test_narinfo_with_wrong_nar_hash_is_400_and_nothing_is_visible(gw: Gateway,
                                                                    tmp_path: Path) -> None:
    up = make_upload(make_tree(tmp_path, "lying", 40_000), None)
    other = make_upload(make_tree(tmp_path, "other", 40_000, seed=1), None)
    up.narinfo.nar_hash = other.narinfo.nar_hash
    up.narinfo.sigs = []
    from nix_formats.keys import sign_narinfo
    sign_narinfo(up.narinfo, gw.key)
    with gw.client() as c:
        nar, info = put_upload(c, up)
    assert nar.status_code == 201
    assert info.status_code == 400 and "the narinfo says" in info.text
    assert absent(gw, up)
    with gw.client() as c:  # the rejected NAR is dropped from staging
        assert c.head(f"/nar/{up.nar_name}").status_code == 404


def test_upload_that_is_not_a_nar_is_400(gw: Gateway, tmp_path: Path) -> None:
    up = make_upload(make_tree(tmp_path, "notnar", 3000), gw.key, compression="none")
    garbage = b"not a nar at all" * 100
    up.body = garbage
    name = up.nar_name
    from nix_formats import nix32
    up.nar_name = f"{nix32.encode(hashlib.sha256(garbage).digest())}.nar"
    up.narinfo.url = f"nar/{up.nar_name}"
    up.narinfo.file_hash = None
    up.narinfo.file_size = None
    with gw.client() as c:
        nar, info = put_upload(c, up)
    assert name != up.nar_name and nar.status_code == 201
    assert info.status_code == 400 and "not valid" in info.text
    assert absent(gw, up)


def test_narinfo_naming_a_nar_never_uploaded_is_400(gw: Gateway, tmp_path: Path) -> None:
    up = make_upload(make_tree(tmp_path, "nonar", 3000), gw.key)
    with gw.client() as c:
        resp = c.put(f"/{up.hash_part}.narinfo", content=up.narinfo.render().encode())
    assert resp.status_code == 400 and "was not uploaded" in resp.text
    assert absent(gw, up)


def test_unsigned_upload_is_403_unless_the_gateway_signs(gw: Gateway, tmp_path: Path) -> None:
    up = make_upload(make_tree(tmp_path, "unsigned", 3000), None)
    with gw.client() as c:
        nar, info = put_upload(c, up)
    assert nar.status_code == 201 and info.status_code == 403
    assert "no signature by a trusted upload key" in info.text
    assert absent(gw, up)


def test_narinfo_for_another_path_and_garbage_narinfo_are_400(gw: Gateway, stored: Upload,
                                                              tmp_path: Path) -> None:
    up = make_upload(make_tree(tmp_path, "mismatch", 3000), gw.key)
    with gw.client() as c:
        wrong = c.put(f"/{stored.hash_part}.narinfo", content=up.narinfo.render().encode())
        garbage = c.put(f"/{up.hash_part}.narinfo", content=b"StorePath: nonsense\n")
        bad_hash = c.put("/not-a-hash.narinfo", content=up.narinfo.render().encode())
    assert wrong.status_code == 400 and "describes" in wrong.text
    assert garbage.status_code == 400
    assert bad_hash.status_code == 400


def test_uploads_disabled_without_credentials(tmp_path: Path) -> None:
    with running_network(tmp_path, publisher=new_publisher("gw-off-1")[0]) as net:
        url = net.start_daemon()
        resp = httpx.put(f"{url}/nar/x.nar", content=b"x", headers=basic(USER, PASSWORD))
        assert resp.status_code == 403 and "disabled" in resp.text


def test_sign_uploads_signs_an_unsigned_upload(tmp_path: Path) -> None:
    g = start_gateway(tmp_path, "--sign-uploads", name="signing")
    try:
        up = make_upload(make_tree(tmp_path, "tosign", 3000), None)
        with g.client() as c:
            nar, info = put_upload(c, up)
        assert (nar.status_code, info.status_code) == (201, 201), info.text
        served, _ = nar_of(g.url, up.hash_part)
        from nix_formats.keys import verify_narinfo
        assert verify_narinfo(served, [g.key.public_key()])
    finally:
        g.net.close()


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


def test_upload_larger_than_the_limit_is_413_and_stores_nothing(gw: Gateway,
                                                                tmp_path: Path) -> None:
    tiny = gw.net.start_gateway("tiny", extra=(
        "--signing-key", str(gw.root / "secret.key"), "--upload-credentials",
        str(gw.credentials), "--max-upload-bytes", "1000"))
    up = make_upload(make_tree(tmp_path, "big", 20_000), gw.key)
    with httpx.Client(base_url=tiny.url, auth=(USER, PASSWORD), timeout=60) as c:
        nar, info = put_upload(c, up)
        assert nar.status_code == 413 and "exceeds the limit" in nar.text
        assert info.status_code == 400  # its NAR never got staged
        assert c.head(f"/nar/{up.nar_name}").status_code == 404
    assert absent(gw, up)


def test_head_answers_wherever_get_does(gw: Gateway, stored: Upload) -> None:
    info, _ = nar_of(gw.url, stored.hash_part)
    for path in ("/nix-cache-info", f"/{stored.hash_part}.narinfo", f"/{stored.hash_part}.ls",
                 f"/{info.url}", "/healthz", "/metrics", "/nixshard/nodes"):
        head = httpx.head(gw.url + path, timeout=30)
        assert head.status_code == 200, path
        assert head.content == b"", path
    assert httpx.head(f"{gw.url}/{'2' * 32}.narinfo", timeout=30).status_code == 404


def test_oversized_narinfo_is_413_and_stores_nothing(gw: Gateway, tmp_path: Path) -> None:
    up = make_upload(make_tree(tmp_path, "hugeinfo", 3000), gw.key)
    text = up.narinfo.render() + "".join(f"X-Padding-{i}: {'x' * 1000}\n" for i in range(1100))
    with gw.client() as c:
        assert c.put(f"/nar/{up.nar_name}", content=up.body).status_code == 201
        resp = c.put(f"/{up.hash_part}.narinfo", content=text.encode())
    assert resp.status_code == 413
    assert absent(gw, up)

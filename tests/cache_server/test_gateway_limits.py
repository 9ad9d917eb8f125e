"""The gateway under hostile uploads and a full disk, with real node and gateway processes.

- one store path, one record: a second upload of a stored path with another
  NAR is 409 and changes nothing; two gateways racing one path with two NARs
  end with one 201, one 409, and both serve the winner;
- decompression bombs (zstd, brotli) uploaded with a small NarSize fail right
  after it, and the gateway's peak RSS (``VmHWM`` of the ``nixshard serve``
  process) stays far under 300 MB;
- a full local-cache disk (a real tmpfs) never breaks a read: NARs and
  listings are served uncached, older NARs are evicted to make room, and an
  upload that cannot be staged is 507 with nothing kept.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest

from nix_formats.keys import sign_narinfo
from tests.support.disk import fill_up
from tests.support.metrics import scrape
from tests.support.trees import make_tree
from tests.support.zstd import unzstd

from .conftest import MountTmpfs
from .gateway_support import (
    BROTLI_BOMB_FILE,
    PASSWORD,
    USER,
    Gateway,
    bomb_upload,
    make_upload,
    nar_of,
    put_upload,
    zstd_nar_bomb,
)

RSS_LIMIT = 200 * 1000 * 1000  # "far under 300 MB": an idle gateway holds about 70 MB


# -- one path, one record -----------------------------------------------------------------


def test_a_stored_path_uploaded_with_another_nar_is_409(gw: Gateway, tmp_path: Path) -> None:
    first = make_upload(make_tree(tmp_path, "one-path", 20_000, seed=1), gw.key)
    with gw.client() as c:
        assert put_upload(c, first)[1].status_code == 201
        other = make_upload(make_tree(tmp_path / "b", "one-path", 20_000, seed=2), None)
        other.narinfo.store_path = first.narinfo.store_path  # same path, other NAR
        other.narinfo.sigs = []
        sign_narinfo(other.narinfo, gw.key)
        nar, info = put_upload(c, other)
        assert nar.status_code == 201  # staged, not yet judged
        assert info.status_code == 409
        assert info.text == f"error: {first.narinfo.store_path.path} exists with another " \
                            "NarHash\n"
        assert c.head(f"/nar/{other.nar_name}").status_code == 404  # nothing kept
        # the same NAR again is fine: 200, nothing re-ingested, its staged copy dropped
        nar, info = put_upload(c, first)
        assert (nar.status_code, info.status_code) == (201, 200)
        assert c.head(f"/nar/{first.nar_name}").status_code == 404
    served, body = nar_of(gw.url, first.hash_part)
    assert served.nar_hash == first.narinfo.nar_hash and unzstd(body) == first.nar
    assert gw.metric("nixshard_gateway_uploads_total", outcome="conflict") == 1


# -- decompression bombs ------------------------------------------------------------------


@pytest.mark.parametrize(("compression", "ext"), [("zstd", ".zst"), ("br", ".br")])
def test_a_decompression_bomb_fails_right_after_its_nar_size(
        gw: Gateway, compression: str, ext: str) -> None:
    """The issue's bombs: a 32 KB zstd file of a 1 GiB NAR, a 1.6 kB brotli file of 1 GiB,
    each with NarSize 120: refused after ~120 bytes of output, RSS untouched."""
    body = zstd_nar_bomb(1 << 30) if compression == "zstd" else BROTLI_BOMB_FILE.read_bytes()
    assert len(body) < 64 * 1024
    up = bomb_upload(gw.key, body, compression, ext, nar_size=120)
    with gw.client() as c:
        nar, info = put_upload(c, up)
    assert nar.status_code == 201
    assert info.status_code == 400
    assert "larger than its NarSize of 120 bytes" in info.text
    assert "decompresses to more than 120 bytes" in info.text
    assert httpx.get(f"{gw.url}/{up.hash_part}.narinfo", timeout=30).status_code == 404
    assert gw.proc.peak_rss() < RSS_LIMIT


# -- a full local-cache disk -------------------------------------------------------------


def test_a_full_cache_disk_never_breaks_a_read(gw: Gateway, tmp_path: Path,
                                               mount_tmpfs: MountTmpfs) -> None:
    ups = [make_upload(make_tree(tmp_path, f"disk{i}", nar_bytes, seed=40 + i), gw.key)
           for i, nar_bytes in enumerate((300_000, 300_000, 700_000))]
    with gw.client() as c:
        for up in ups:
            assert put_upload(c, up)[1].status_code == 201
    size = len(nar_of(gw.url, ups[0].hash_part)[1])  # about 300 kB: incompressible
    disk = mount_tmpfs(tmp_path / "disk", 4 << 20)
    g2 = gw.net.start_gateway("fulldisk", extra=(
        "--cache-dir", str(disk), "--cache-min-free-bytes", "0",
        "--signing-key", str(gw.root / "secret.key"),
        "--upload-credentials", str(gw.credentials)))
    fill_up(disk, leave=size + size // 2)  # room for one NAR, not two

    def outcome(result: str) -> float:
        return scrape(g2.url, "nixshard_gateway_nar_cache_total", result=result)

    # the first NAR fits; the second fits once the first is evicted
    for up in ups[:2]:
        assert unzstd(nar_of(g2.url, up.hash_part)[1]) == up.nar
    assert outcome("miss") == 2 and outcome("no_space") == 0
    cached = [p.name for p in (disk / "nar").iterdir() if p.is_file()]
    assert len(cached) == 1 and cached[0].startswith(ups[1].hash_part)
    # now the disk is full: evicting the cached NAR does not make room for the third,
    # larger one, which is served from the network, uncached
    fill_up(disk)
    info, body = nar_of(g2.url, ups[2].hash_part)
    assert unzstd(body) == ups[2].nar and len(body) == info.file_size
    assert outcome("no_space") == 1
    assert [p for p in (disk / "nar").iterdir() if p.is_file()] == []
    # a range of it too, and its listing (which cannot be kept on disk)
    part = httpx.get(f"{g2.url}/{info.url}", headers={"Range": "bytes=1000-1999"}, timeout=30)
    assert part.status_code == 206 and part.content == body[1000:2000]
    listing = httpx.get(f"{g2.url}/{ups[2].hash_part}.ls", timeout=30)
    assert listing.status_code == 200 and listing.json()["root"]["type"] == "directory"
    # an upload cannot be staged: 507, nothing kept
    fill_up(disk)  # (the evicted NAR had freed some room)
    up = make_upload(make_tree(tmp_path, "nostage", 200_000, seed=50), gw.key)
    with httpx.Client(base_url=g2.url, auth=(USER, PASSWORD), timeout=60) as c:
        nar = c.put(f"/nar/{up.nar_name}", content=up.body)
        assert nar.status_code == 507 and "cannot stage the upload" in nar.text
        assert c.head(f"/nar/{up.nar_name}").status_code == 404
    assert [p.name for p in (disk / "uploads").iterdir()] == []
    log = (gw.net.root / "fulldisk.log").read_text()
    assert "Traceback" not in log and "Error handling request" not in log
    assert "serving it uncached" in log


def test_two_gateways_racing_one_path_with_two_nars_agree(gw: Gateway, tmp_path: Path) -> None:
    """Both narinfos are PUT at once, one per gateway: one 201, one 409 (from the
    pre-check or from the write's RecordConflictError), and both serve the winner."""
    other_gw = gw.net.start_gateway("racer", extra=(
        "--signing-key", str(gw.root / "secret.key"),
        "--upload-credentials", str(gw.credentials)))
    ups = [make_upload(make_tree(tmp_path / str(i), "raced", 50_000, seed=60 + i), gw.key)
           for i in range(2)]
    ups[1].narinfo.store_path = ups[0].narinfo.store_path
    ups[1].narinfo.sigs = []
    sign_narinfo(ups[1].narinfo, gw.key)
    clients = [gw.client(), httpx.Client(base_url=other_gw.url, auth=(USER, PASSWORD),
                                         timeout=60)]
    try:
        for client, up in zip(clients, ups, strict=True):
            assert client.put(f"/nar/{up.nar_name}", content=up.body).status_code == 201
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(
                lambda pair: pair[0].put(f"/{pair[1].hash_part}.narinfo",
                                         content=pair[1].narinfo.render().encode()),
                zip(clients, ups, strict=True)))
    finally:
        for client in clients:
            client.close()
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    loser = next(a for a in answers if a.status_code == 409)
    assert loser.text == f"error: {ups[0].narinfo.store_path.path} exists with another NarHash\n"
    winner = ups[[a.status_code for a in answers].index(201)]
    for url in (gw.url, other_gw.url):
        info, body = nar_of(url, winner.hash_part)
        assert info.nar_hash == winner.narinfo.nar_hash and unzstd(body) == winner.nar

"""The gateway's uploads: auth, checks, size limits, nothing visible on rejection;
against real node and gateway processes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from nix_formats import nix32
from nix_formats.hash import parse_nix_hash
from nix_formats.keys import sign_narinfo, verify_narinfo
from nixshard.localnet import new_publisher
from tests.support.network import running_network
from tests.support.trees import make_tree
from tests.support.zstd import unzstd

from .gateway_support import (
    PASSWORD,
    USER,
    Gateway,
    Upload,
    absent,
    basic,
    make_upload,
    nar_of,
    put_upload,
    start_gateway,
)


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
        assert verify_narinfo(served, [g.key.public_key()])
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


def test_oversized_narinfo_is_413_and_stores_nothing(gw: Gateway, tmp_path: Path) -> None:
    up = make_upload(make_tree(tmp_path, "hugeinfo", 3000), gw.key)
    text = up.narinfo.render() + "".join(f"X-Padding-{i}: {'x' * 1000}\n" for i in range(1100))
    with gw.client() as c:
        assert c.put(f"/nar/{up.nar_name}", content=up.body).status_code == 201
        resp = c.put(f"/{up.hash_part}.narinfo", content=text.encode())
    assert resp.status_code == 413
    assert absent(gw, up)

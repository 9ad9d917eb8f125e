"""``/realisations/<id>.doi`` on a live gateway (real node processes): PUT, GET and HEAD,
every refusal, ``--sign-uploads``, a second gateway and a private network.

Uploads are made the way Nix 2.8 makes them (``PUT realisations/<id>.doi``,
``application/json``, after the output path's NAR and narinfo); the
realisations of Nix's own builds are in tests/e2e/test_ca_realisations.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from nix_formats import nix32
from nix_formats.keys import SecretKey
from nix_formats.realisation import DrvOutput, Realisation
from nix_formats.store_path import StorePath
from nix_records import (
    REALISATION_MAGIC,
    is_build_log,
    is_realisation,
    log_metadata,
    log_record_key,
    realisation_from_record,
    realisation_record,
    realisation_record_key,
)
from nix_records.errors import RecordContentError
from nixshard.localnet import LocalNetwork, new_publisher
from storage_network import Manifest, NetworkClient, Record, publish_record
from storage_network.wire.write_auth import parse_publisher_secret
from tests.support.network import NODES, SMALL_CHUNKS, K, M
from tests.support.trees import make_tree

from .gateway_support import PASSWORD, USER, Gateway, Upload, basic, make_upload, put_upload

ABSENT_PATH = StorePath.parse_basename("0" * 32 + "-not-uploaded")


def new_id(output: str = "out") -> DrvOutput:
    """A fresh derivation output id."""
    return DrvOutput(os.urandom(32), output)


def realisation(out: StorePath, key: SecretKey | None, drv: DrvOutput | None = None,
                deps: dict[DrvOutput, StorePath] | None = None) -> Realisation:
    """A realisation of ``drv`` (default: a fresh id) to ``out``, signed by ``key``."""
    real = Realisation.new(drv or new_id(), out, (), deps)
    return real.sign(key) if key is not None else real


def doi(real: Realisation | DrvOutput) -> str:
    """Its URL path."""
    return f"/realisations/{real.id if isinstance(real, Realisation) else real}.doi"


def put(client: httpx.Client, real: Realisation, body: bytes | None = None) -> httpx.Response:
    """PUT ``real`` as Nix does."""
    return client.put(doi(real), content=real.render().encode() if body is None else body,
                      headers={"Content-Type": "application/json"})


def absent(url: str, drv: DrvOutput) -> bool:
    return httpx.get(f"{url}{doi(drv)}", timeout=30).status_code == 404


def test_put_then_get_and_head_from_this_and_another_gateway(gw: Gateway,
                                                             stored: Upload) -> None:
    real = realisation(stored.narinfo.store_path, gw.key, new_id("dev"))
    with gw.client() as c:
        assert c.get(doi(real)).status_code == 404
        created = put(c, real)
        assert created.status_code == 201, created.text
        got = c.get(doi(real))
        assert got.status_code == 200
        assert got.headers["Content-Type"].startswith("application/json")
        assert got.text == real.render()
        assert Realisation.parse(got.content) == real
        head = c.head(doi(real))
        assert head.status_code == 200 and head.content == b""
        # the id in nix32 names the same realisation
        nix32_name = f"sha256:{nix32.encode(real.id.digest)}!dev"
        assert c.get(f"/realisations/{nix32_name}.doi").text == real.render()
        # uploading it again (nix copy always PUTs) stores nothing and answers 200
        again = put(c, real)
        assert again.status_code == 200 and again.text == "exists\n"
    other = gw.net.start_gateway("realisation-reader")
    got = httpx.get(f"{other.url}{doi(real)}", timeout=30)
    assert got.status_code == 200 and got.text == real.render()


def test_a_dependency_chain_is_stored_dependencies_first(gw: Gateway, stored: Upload) -> None:
    out = stored.narinfo.store_path
    dep = realisation(out, gw.key)
    top = realisation(out, gw.key, deps={dep.id: out})
    with gw.client() as c:
        early = put(c, top)
        assert early.status_code == 400 and "upload it first" in early.text
        assert absent(gw.url, top.id)
        assert put(c, dep).status_code == 201
        assert put(c, top).status_code == 201
        assert Realisation.parse(c.get(doi(top)).content).dependent == ((dep.id, out),)
        wrong = realisation(out, gw.key, deps={dep.id: ABSENT_PATH})
        conflict = put(c, wrong)
    assert conflict.status_code == 409 and "the cache holds" in conflict.text
    assert absent(gw.url, wrong.id)


def test_another_output_path_for_a_held_id_is_409(gw: Gateway, stored: Upload) -> None:
    real = realisation(stored.narinfo.store_path, gw.key)
    with gw.client() as c:
        assert put(c, real).status_code == 201
        other = realisation(ABSENT_PATH, gw.key, real.id)
        resp = put(c, other)
        assert resp.status_code == 409 and "exists with output path" in resp.text
        assert c.get(doi(real)).text == real.render()
        # the same build signed by another key: held already, nothing written
        resigned = realisation(stored.narinfo.store_path, SecretKey.generate("other-1"), real.id)
        assert put(c, resigned).status_code == 200
        assert c.get(doi(real)).text == real.render()


def test_refused_uploads_store_nothing(gw: Gateway, stored: Upload) -> None:
    out = stored.narinfo.store_path
    real = realisation(out, gw.key)
    with gw.client() as c:
        unsigned = put(c, realisation(out, None, real.id))
        assert unsigned.status_code == 403
        assert "no signature by a trusted upload key" in unsigned.text
        untrusted = put(c, realisation(out, SecretKey.generate("stranger-1"), real.id))
        assert untrusted.status_code == 403
        not_uploaded = put(c, realisation(ABSENT_PATH, gw.key, real.id))
        assert not_uploaded.status_code == 400 and "upload the path first" in not_uploaded.text
        renamed = StorePath(out.hash_part, out.name + "-renamed")
        wrong_name = put(c, realisation(renamed, gw.key, real.id))
        assert wrong_name.status_code == 400 and "but the cache holds" in wrong_name.text
        another_id = c.put(doi(new_id()), content=real.render().encode())
        assert another_id.status_code == 400 and "holds the realisation of" in another_id.text
        for body in (b"", b"{", b"[]", b'{"id": "x"}', real.render().encode()[:-1]):
            assert put(c, real, body).status_code == 400, body
        huge = put(c, real, b" " * (1024 * 1024 + 1))
        assert huge.status_code == 413
    no_creds = httpx.put(f"{gw.url}{doi(real)}", content=real.render().encode(), timeout=30)
    assert no_creds.status_code == 401
    wrong_pass = httpx.put(f"{gw.url}{doi(real)}", content=real.render().encode(),
                           headers=basic(USER, "wrong"), timeout=30)
    assert wrong_pass.status_code == 401
    assert absent(gw.url, real.id)


@pytest.mark.parametrize("name", [
    "sha256:" + "ab" * 32,                      # no output
    "sha256:" + "ab" * 32 + "!",                # empty output
    "sha256:" + "AB" * 32 + "!out",             # upper-case hex
    "sha512:" + "ab" * 64 + "!out",             # another algorithm
    "sha256:" + "ab" * 30 + "!out",             # short
    "sha256:" + "ab" * 32 + "!o%20ut",          # a space in the output name
    "sha256:" + "ab" * 32 + "!..%2F..%2Fx",     # traversal in the output name
    "%2E%2E",
])
def test_malformed_ids_are_400(gw: Gateway, name: str) -> None:
    with gw.client() as c:
        assert c.get(f"/realisations/{name}.doi").status_code == 400
        assert c.head(f"/realisations/{name}.doi").status_code == 400
        assert c.put(f"/realisations/{name}.doi", content=b"{}").status_code == 400


def test_sign_uploads_signs_an_unsigned_realisation(gw: Gateway, stored: Upload) -> None:
    signing = gw.net.start_gateway("realisation-signer", extra=(
        "--signing-key", str(gw.root / "secret.key"), "--upload-credentials",
        str(gw.credentials), "--sign-uploads"))
    real = realisation(stored.narinfo.store_path, None)
    with httpx.Client(base_url=signing.url, auth=(USER, PASSWORD), timeout=60) as c:
        assert put(c, real).status_code == 201
        served = Realisation.parse(c.get(doi(real)).content)
    assert served.signed_by([gw.key.public_key()]) == [gw.key.name]
    assert served.same_build(real)


async def test_a_realisation_record_under_a_store_path_key_is_no_narinfo(
        gw: Gateway, stored: Upload) -> None:
    """Keys never collide by construction; should a realisation record sit under a
    store-path key anyway, the narinfo route must read the path as absent."""
    hash_part = nix32.encode(os.urandom(20))
    assert gw.net.network is not None
    real = realisation(stored.narinfo.store_path, gw.key)
    publisher = parse_publisher_secret(gw.secret_text)
    async with NetworkClient(gw.net.network) as net:
        empty = Manifest(net.network.codec, net.network.k, net.network.m, (), False)
        await publish_record(net, publisher, hash_part, realisation_record(real).metadata, empty)
    resp = httpx.get(f"{gw.url}/{hash_part}.narinfo", timeout=30)
    assert resp.status_code == 404, resp.text


def test_record_key_and_metadata() -> None:
    drv = DrvOutput.parse("sha256:" + "ab" * 32 + "!out")
    key = realisation_record_key(drv)
    assert len(key) == 32 and set(key) <= set(nix32.ALPHABET)
    assert key == realisation_record_key(DrvOutput(drv.digest, "out"))
    assert key != realisation_record_key(DrvOutput(drv.digest, "dev"))
    assert key != realisation_record_key(DrvOutput(bytes(32), "out"))
    real = Realisation.new(drv, ABSENT_PATH)
    content = realisation_record(real)
    assert content.key == key
    assert content.metadata == REALISATION_MAGIC + real.render().encode()
    assert is_realisation(content.metadata) and not is_build_log(content.metadata)
    assert not is_realisation(log_metadata(ABSENT_PATH.basename + ".drv"))
    assert key != log_record_key(ABSENT_PATH.basename + ".drv")


def test_realisation_from_record_checks_what_it_holds() -> None:
    drv = DrvOutput.parse("sha256:" + "cd" * 32 + "!out")
    real = Realisation.new(drv, ABSENT_PATH)
    publisher = new_publisher("realisation-unit-1")[0]
    empty = Manifest("isa_l_rs_cauchy", 4, 2, (), False)

    def record(metadata: bytes) -> Record:
        return Record(realisation_record_key(drv), publisher.public, metadata, empty, 1)

    assert realisation_from_record(drv, record(realisation_record(real).metadata)) == real
    assert realisation_from_record(drv, record(b"StorePath: /nix/store/x\n")) is None
    assert realisation_from_record(drv, record(log_metadata("x.drv"))) is None
    other = Realisation.new(DrvOutput(drv.digest, "dev"), ABSENT_PATH)
    with pytest.raises(RecordContentError, match="holds the realisation of"):
        realisation_from_record(drv, record(realisation_record(other).metadata))
    with pytest.raises(RecordContentError, match="malformed JSON"):
        realisation_from_record(drv, record(REALISATION_MAGIC + b"{"))


def test_a_private_network_keeps_realisations_sealed(tmp_path: Path) -> None:
    publisher, secret_text = new_publisher("realisation-private-1")
    key = SecretKey.parse(secret_text)
    with LocalNetwork(tmp_path, publisher) as local:
        local.start_nodes(NODES, K, M, SMALL_CHUNKS, private=True)
        (tmp_path / "secret.key").write_text(secret_text)
        (tmp_path / "credentials").write_text(f"{USER}:{PASSWORD}\n")
        gateway = local.start_gateway("private-gw", extra=(
            "--signing-key", str(tmp_path / "secret.key"),
            "--upload-credentials", str(tmp_path / "credentials")))
        up = make_upload(make_tree(tmp_path, "private-out", 20_000), key)
        real = realisation(up.narinfo.store_path, key)
        with httpx.Client(base_url=gateway.url, auth=(USER, PASSWORD), timeout=60) as c:
            assert [r.status_code for r in put_upload(c, up)] == [201, 201]
            assert put(c, real).status_code == 201
            assert c.get(doi(real)).text == real.render()
        assert httpx.get(f"{gateway.url}{doi(real)}", timeout=30).status_code == 401
        secrets = (real.id.digest.hex().encode(), up.narinfo.store_path.name.encode(),
                   REALISATION_MAGIC)
        blobs = [p.read_bytes() for i in range(1, NODES + 1)
                 for p in local.node_dir(i).rglob("*") if p.is_file()]
        assert blobs and not any(s in b for s in secrets for b in blobs)
        # the record key is keyed: the plain key appears in no node's file names
        plain_key = realisation_record_key(real.id)
        assert not any(plain_key in str(p) for i in range(1, NODES + 1)
                       for p in local.node_dir(i).rglob("*"))

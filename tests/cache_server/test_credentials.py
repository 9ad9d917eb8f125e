"""Scoped credentials (cache_server.credentials, cache_server.auth): the file format, the
authenticator (argon2, its cache), and a real gateway process enforcing scopes and
prefixes; plus the option checks of ``nixshard serve`` around them (and
``--tls-cert``/``--tls-key``)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import argon2
import httpx
import pytest
from click.testing import CliRunner

from cache_server.credentials import (
    DEFAULT_SCOPES,
    Authenticator,
    Credential,
    CredentialsError,
    Scopes,
    parse_credentials,
    parse_scopes,
)
from cache_server.errors import UnauthorizedError
from nix_formats.keys import SecretKey
from nixshard.cli import main
from nixshard.localnet import LocalNetwork, ManagedProcess, free_port, new_publisher
from tests.support.network import running_network
from tests.support.tls import make_certs, new_key, write_key
from tests.support.trees import make_tree

from .gateway_support import Upload, basic, make_upload, put_upload

# Cheap argon2 parameters for tests: verification reads them from the hash.
FAST = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def fast_hash(password: str) -> str:
    return FAST.hash(password)


def header(user: str, password: str) -> str:
    return basic(user, password)["Authorization"]


# --- the file format -----------------------------------------------------------------------


def test_lines_hashed_and_plaintext_with_and_without_scopes() -> None:
    h1, h2 = fast_hash("one"), fast_hash("two")
    text = "\n".join([
        "# uploaders",
        "",
        f"ci:{h1}:write,prefix=myproject-,prefix=tools-",
        f"  alice:{h2}  ",  # surrounding whitespace is dropped
        "legacy:pa:ss",  # a plaintext password with ':' (the old format)
        "reader:pw:read",  # the last field parses as scopes
        "quoted:pw:read:read,write",  # ... so a password ending in one needs an explicit field
    ])
    creds = parse_credentials(text, "creds")
    assert creds["ci"] == Credential("ci", h1, Scopes(False, True, ("myproject-", "tools-")))
    assert creds["ci"].hashed and creds["ci"].line == 3
    assert creds["alice"] == Credential("alice", h2, DEFAULT_SCOPES)
    assert creds["legacy"].secret == "pa:ss" and creds["legacy"].scopes == DEFAULT_SCOPES
    assert not creds["legacy"].hashed
    assert (creds["reader"].secret, creds["reader"].scopes) == ("pw", Scopes(True, False))
    assert creds["quoted"].secret == "pw:read" and creds["quoted"].scopes == DEFAULT_SCOPES
    for cred in creds.values():  # every line renders back to itself
        assert parse_credentials(cred.render(), "x")[cred.user] == cred
    assert "pa:ss" not in repr(creds["legacy"])


def test_prefix_scopes_allow_by_store_path_name() -> None:
    scopes = parse_scopes("read,prefix=foo-,prefix=bar")
    assert scopes.allows("foo-1.0") and scopes.allows("barn") and not scopes.allows("baz")
    assert scopes.text() == "read,prefix=foo-,prefix=bar"
    assert scopes.limits() == "store paths named foo-* or bar*"
    assert DEFAULT_SCOPES.allows("anything")


@pytest.mark.parametrize(("line", "message"), [
    ("no-colon-here", "line 2: want user:secret[:scopes]"),
    ("user:", "line 2: want user:secret[:scopes]"),
    (":secret", "line 2: bad user name"),
    ("us er:secret", "line 2: bad user name"),
    ("user::read", "line 2: empty password"),
    ("user:$argon2id$v=19$m=65536,t=3,p=4$broken", "is not a valid argon2 hash"),
    ("user:HASH:raed", "unknown scope 'raed'"),
    ("user:HASH:read,read", "scope 'read' given twice"),
    ("user:HASH:prefix=foo", "name neither read nor write"),
    ("user:HASH:read,prefix=a/b", "characters of a store-path name"),
    ("user:HASH:read,prefix=", "characters of a store-path name"),
    ("user:HASH:", "unknown scope ''"),
    ("first:other", "user 'first' given twice"),
])
def test_bad_lines_are_refused_naming_the_line_and_not_the_secret(line: str,
                                                                   message: str) -> None:
    secret_hash = fast_hash("s3cret")
    text = f"first:pw-of-first\n{line.replace('HASH', secret_hash)}\n"
    with pytest.raises(CredentialsError) as caught:
        parse_credentials(text, "/etc/creds")
    assert str(caught.value).startswith("/etc/creds line 2: ")
    assert message in str(caught.value)
    assert secret_hash not in str(caught.value) and "pw-of-first" not in str(caught.value)


# --- the authenticator ---------------------------------------------------------------------


async def test_hashed_credentials_are_verified_once_and_cached() -> None:
    auth = Authenticator({"ci": Credential("ci", fast_hash("right"))})
    try:
        # concurrent requests with one password share one verification
        found = await asyncio.gather(*(auth.authenticate(header("ci", "right"))
                                       for _ in range(20)))
        assert {c.user for c in found} == {"ci"}
        assert auth.verifications == 1
        await auth.authenticate(header("ci", "right"))
        assert auth.verifications == 1  # remembered
        for expected in (2, 3):  # a wrong password is verified each time, never remembered
            with pytest.raises(UnauthorizedError, match="wrong user or password"):
                await auth.authenticate(header("ci", "wrong"))
            assert auth.verifications == expected
        # an unknown user costs a verification too (against a real hash), same message
        with pytest.raises(UnauthorizedError, match="wrong user or password"):
            await auth.authenticate(header("nobody", "right"))
        assert auth.verifications == 4
    finally:
        auth.close()


async def test_the_cache_is_bounded() -> None:
    creds = {u: Credential(u, fast_hash(f"pw-{u}")) for u in ("a", "b", "c")}
    auth = Authenticator(creds, cache_size=2)
    try:
        for user in ("a", "b", "c"):  # a is evicted by c
            await auth.authenticate(header(user, f"pw-{user}"))
        assert auth.verifications == 3
        await auth.authenticate(header("c", "pw-c"))
        assert auth.verifications == 3
        await auth.authenticate(header("a", "pw-a"))
        assert auth.verifications == 4
        # a changed hash is a new cache key: the old verification does not count
        auth.credentials["c"] = Credential("c", fast_hash("pw-c"))
        await auth.authenticate(header("c", "pw-c"))
        assert auth.verifications == 5
    finally:
        auth.close()


@pytest.mark.parametrize(("value", "message"), [
    (None, "this request needs credentials"),
    ("Bearer abc", "unsupported authorization scheme 'Bearer'"),
    ("Basic %%%", "malformed basic-auth credentials"),
    ("Basic " + base64.b64encode(b"no-colon").decode(), "malformed basic-auth credentials"),
    ("Basic " + base64.b64encode(b"\xff:x").decode(), "malformed basic-auth credentials"),
    (header("legacy", "pa:s"), "wrong user or password"),
    (header("legacy", "pa:ss "), "wrong user or password"),
])
async def test_plaintext_and_malformed_headers(value: str | None, message: str) -> None:
    auth = Authenticator({"legacy": Credential("legacy", "pa:ss")})
    assert (await auth.authenticate(header("legacy", "pa:ss"))).user == "legacy"
    with pytest.raises(UnauthorizedError, match=re.escape(message)):
        await auth.authenticate(value)
    assert auth.verifications == 0  # no argon2 work for plaintext-only files


# --- a gateway enforcing scopes ------------------------------------------------------------

PASSWORDS = {"rw": "rw-pass", "reader": "reader-pass", "writer": "writer-pass",
             "scoped": "scoped-pass", "legacy": "legacy:pass"}
ALLOWED = "demo-allowed-"


@dataclass
class ScopedGateway:
    net: LocalNetwork
    proc: ManagedProcess
    key: SecretKey
    root: Path

    def client(self, user: str | None) -> httpx.Client:
        auth = (user, PASSWORDS[user]) if user is not None else None
        return httpx.Client(base_url=self.proc.url, timeout=60, auth=auth)

    def upload(self, user: str, name: str, size: int = 3000) -> tuple[Upload, int]:
        """Upload a tree named ``name`` as ``user``: the upload and the narinfo's status."""
        up = make_upload(make_tree(self.root / "trees", name, size), self.key)
        with self.client(user) as c:
            _, info = put_upload(c, up)
        return up, info.status_code


@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScopedGateway]:
    """6 nodes and a gateway with --read-auth and one credential of each kind."""
    root = tmp_path_factory.mktemp("scoped")
    publisher, secret_text = new_publisher("scoped-tests-1")
    key_file = root / "secret.key"
    key_file.write_text(secret_text)
    creds = root / "credentials"
    creds.write_text("\n".join([
        f"rw:{fast_hash(PASSWORDS['rw'])}",
        f"reader:{fast_hash(PASSWORDS['reader'])}:read",
        f"writer:{fast_hash(PASSWORDS['writer'])}:write",
        f"scoped:{fast_hash(PASSWORDS['scoped'])}:read,write,prefix={ALLOWED}",
        f"legacy:{PASSWORDS['legacy']}",
    ]) + "\n")
    with running_network(root, publisher=publisher) as net:
        proc = net.start_gateway("scoped-gw", extra=(
            "--signing-key", str(key_file), "--upload-credentials", str(creds), "--read-auth"))
        yield ScopedGateway(net, proc, SecretKey.parse(secret_text), root)


def test_a_plaintext_password_is_logged_once_by_user_never_by_value(
        scoped: ScopedGateway) -> None:
    log = scoped.proc.log_path.read_text()
    warnings = [line for line in log.splitlines() if "plaintext password" in line]
    assert len(warnings) == 1, warnings
    assert "line 5: user 'legacy' has a plaintext password" in warnings[0]
    for password in PASSWORDS.values():
        assert password not in log


def test_a_read_only_credential_cannot_upload(scoped: ScopedGateway) -> None:
    up, status = scoped.upload("reader", "by-reader")
    assert status == 403
    with scoped.client("reader") as c:
        nar = c.put(f"/nar/{up.nar_name}", content=up.body)
        assert nar.status_code == 403
        assert "user 'reader' lacks the write scope" in nar.text
        assert "its scopes: read" in nar.text
        assert c.get(f"/{up.hash_part}.narinfo").status_code == 404  # nothing stored
    with scoped.client("rw") as c:
        assert c.head(f"/nar/{up.nar_name}").status_code == 404  # not even staged


def test_a_write_only_credential_uploads_but_does_not_read(scoped: ScopedGateway) -> None:
    up, status = scoped.upload("writer", "by-writer")
    assert status == 201
    with scoped.client("writer") as c:
        denied = c.get(f"/{up.hash_part}.narinfo")
        assert denied.status_code == 403 and "user 'writer' lacks the read scope" in denied.text
        # what `nix copy --to` asks before uploading stays open to it
        assert c.head(f"/{up.hash_part}.narinfo").status_code == 200
        assert c.get("/nix-cache-info").status_code == 200
    with scoped.client("reader") as c:
        info = c.get(f"/{up.hash_part}.narinfo")
        assert info.status_code == 200 and "-demo-by-writer" in info.text
        nar_url = next(line.split(": ", 1)[1] for line in info.text.splitlines()
                       if line.startswith("URL: "))
        assert c.get(f"/{nar_url}").status_code == 200


def test_wrong_and_unknown_credentials_are_401(scoped: ScopedGateway) -> None:
    url = f"{scoped.proc.url}/nix-cache-info"
    for user, password in (("rw", "wrong"), ("nobody", "rw-pass"), ("legacy", "legacy")):
        resp = httpx.get(url, headers=basic(user, password), timeout=30)
        assert resp.status_code == 401, (user, resp.text)
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert httpx.get(url, timeout=30).status_code == 401
    with scoped.client("legacy") as c:
        assert c.get("/nix-cache-info").status_code == 200
    assert httpx.get(f"{scoped.proc.url}/healthz", timeout=30).status_code == 200


def test_a_prefix_limits_uploads_and_reads_to_store_path_names(scoped: ScopedGateway) -> None:
    inside, status = scoped.upload("scoped", "allowed-one")
    assert status == 201
    outside, status = scoped.upload("scoped", "other-one")
    assert status == 403
    with scoped.client("scoped") as c:
        refused = c.put(f"/{outside.hash_part}.narinfo", content=outside.narinfo.render())
        assert refused.status_code == 403
        assert f"user 'scoped' may not upload demo-other-one: it is limited to store paths " \
               f"named {ALLOWED}*" in refused.text
    theirs, status = scoped.upload("rw", "other-two")
    assert status == 201
    with scoped.client("rw") as c:
        assert c.get(f"/{outside.hash_part}.narinfo").status_code == 404  # not stored
        theirs_nar = c.get(f"/{theirs.hash_part}.narinfo").text.split("URL: ")[1].split()[0]
    with scoped.client("scoped") as c:
        info = c.get(f"/{inside.hash_part}.narinfo")
        assert info.status_code == 200
        nar_url = info.text.split("URL: ")[1].split()[0]
        assert c.get(f"/{nar_url}").status_code == 200
        assert c.get(f"/{inside.hash_part}.ls").status_code == 200
        for path in (f"/{theirs.hash_part}.narinfo", f"/{theirs_nar}", f"/{theirs.hash_part}.ls"):
            for method in ("GET", "HEAD"):
                resp = c.request(method, path)
                assert resp.status_code == 403, (method, path)
        denied = c.get(f"/{theirs.hash_part}.narinfo")
        assert "demo-other-two" not in denied.text  # the refusal does not name the path
        # no store path name to check: refused
        assert c.get("/upstream/0/nar/x.nar.zst").status_code == 403
        # a build log is checked by its derivation's name
        drv_in = f"{'a' * 32}-{ALLOWED}x.drv"
        drv_out = f"{'a' * 32}-other-x.drv"
        assert c.put(f"/log/{drv_in}", content=b"built\n").status_code == 201
        assert c.get(f"/log/{drv_in}").text == "built\n"
        assert c.put(f"/log/{drv_out}", content=b"built\n").status_code == 403
        assert c.get(f"/log/{drv_out}").status_code == 403
        # a realisation is checked by the name of its output path
        drv_output = "sha256:" + "0" * 64 + "!out"
        realisation = json.dumps({"id": drv_output, "signatures": [],
                                  "outPath": f"{theirs.hash_part}-demo-other-two",
                                  "dependentRealisations": {}})
        refused = c.put(f"/realisations/{drv_output}.doi", content=realisation)
        assert refused.status_code == 403
        assert "user 'scoped' may not upload demo-other-two" in refused.text
        # requests that name no store path are open to it
        assert c.get("/nix-cache-info").status_code == 200
        assert c.get("/metrics").status_code == 200


def test_read_only_credentials_need_no_signing_key(scoped: ScopedGateway) -> None:
    creds = scoped.root / "readers-only"
    creds.write_text(f"alice:{fast_hash('alice-pass')}:read\n")
    gw = scoped.net.start_gateway("readers-gw", extra=(
        "--upload-credentials", str(creds), "--read-auth"))
    assert httpx.get(f"{gw.url}/nix-cache-info", auth=("alice", "alice-pass"),
                     timeout=30).status_code == 200
    put = httpx.put(f"{gw.url}/nix-cache-info", content=b"StoreDir: /nix/store\n",
                    auth=("alice", "alice-pass"), timeout=30)
    assert put.status_code == 403 and "uploads are disabled" in put.text


# --- option checks of nixshard serve -------------------------------------------------------


@pytest.fixture(scope="module")
def network_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A network file (its nodes need not run: these checks come before any request)."""
    out = tmp_path_factory.mktemp("netfile") / "network.toml"
    urls = [arg for i in range(6) for arg in ("--node", f"http://127.0.0.1:{9400 + i}")]
    res = CliRunner().invoke(main, ["network", "init", "-k", "4", "-m", "2", "--publisher",
                                    new_publisher("opts-1")[0].public.text(), *urls,
                                    "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out


def serve(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["serve", *args])
    return res.exit_code, res.output


@pytest.mark.parametrize("given", [("--tls-cert", "cert.pem"), ("--tls-key", "key.pem")])
def test_tls_cert_and_key_go_together(network_file: Path, given: tuple[str, str]) -> None:
    code, output = serve("--network", str(network_file), *given)
    assert code == 2
    assert "--tls-cert and --tls-key go together: give both" in output


def test_read_auth_needs_a_credential_of_the_read_scope(network_file: Path,
                                                        tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.write_text(f"ci:{fast_hash('x')}:write\n")
    code, output = serve("--network", str(network_file), "--upload-credentials", str(creds),
                         "--read-auth")
    assert code == 2 and "at least one credential of the read scope" in output


def test_a_malformed_credentials_file_stops_the_gateway(network_file: Path,
                                                         tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.write_text(f"ci:{fast_hash('x')}:wirte\n")
    code, output = serve("--network", str(network_file), "--upload-credentials", str(creds))
    assert code == 1 and f"{creds} line 1: unknown scope 'wirte'" in output


def test_a_mismatched_tls_key_stops_the_gateway(network_file: Path, tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    other = write_key(tmp_path / "other.key", new_key())
    code, output = serve("--network", str(network_file), "--tls-cert", str(certs.cert),
                         "--tls-key", str(other))
    assert code == 1
    assert f"not serving: TLS key {other} does not match the certificate" in output


def test_the_gateway_serves_https_with_tls_cert_and_key(scoped: ScopedGateway, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """(LocalNetwork.start_gateway makes http:// URLs, so the process is made here.)"""
    certs = make_certs(tmp_path)
    port = free_port()
    gw = ManagedProcess("tls-gw", [
        "serve", "--network", str(scoped.net.network_file), "--listen", f"127.0.0.1:{port}",
        "--cache-dir", str(tmp_path / "cache"),
        "--tls-cert", str(certs.cert), "--tls-key", str(certs.key)],
        f"https://127.0.0.1:{port}", tmp_path / "tls-gw.log")
    scoped.net.gateways.append(gw)  # stopped with the network
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))  # localnet's readiness check trusts it
    gw.start().wait_ready()
    trust = ssl.create_default_context(cafile=str(certs.ca))
    info = httpx.get(f"{gw.url}/nix-cache-info", verify=trust, timeout=30)
    assert info.status_code == 200 and "StoreDir: /nix/store" in info.text
    with pytest.raises(httpx.TransportError):  # HTTPS only: plain HTTP gets no answer
        httpx.get(f"http://127.0.0.1:{port}/nix-cache-info", timeout=30)
    assert "serving HTTPS: certificate" in gw.log_path.read_text()
    assert f"nixshard serve: https://127.0.0.1:{port}" in gw.log_path.read_text()

"""TLS: http_serving.tls.server_ssl_context, serve_app(ssl_context=...) and the node's options."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from http_serving.tls import TlsConfigError, certificate_summary, server_ssl_context
from nixshard.localnet import free_port, new_publisher
from storage_node.cli import node_command
from tests.support.http_serving import serving
from tests.support.tls import TestCerts, make_certs, new_key, write_key

BOUND = 20.0  # a generous bound on how long a guard may take to act (not a timing claim)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_certs(tmp_path_factory.mktemp("tls"))


def client_context(ca: Path) -> ssl.SSLContext:
    """A verifying client context that trusts only the test CA."""
    return ssl.create_default_context(cafile=str(ca))


async def hello(_: web.Request) -> web.Response:
    return web.Response(text="hello over tls")


@pytest.fixture
async def https_port(certs: TestCerts) -> AsyncIterator[int]:
    """A server answering ``GET /`` over TLS (idle timeout 0.6 s)."""
    app = web.Application()
    app.router.add_get("/", hello)
    async with serving(app, idle_timeout=0.6,
                       ssl_context=server_ssl_context(certs.cert, certs.key)) as port:
        yield port


# --- serving ---------------------------------------------------------------------------------


async def test_serve_app_speaks_https_that_a_verifying_client_accepts(
        https_port: int, certs: TestCerts) -> None:
    url = f"https://127.0.0.1:{https_port}/"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=client_context(certs.ca)) as resp:
            assert resp.status == 200
            assert await resp.text() == "hello over tls"
        # a client that does not trust the CA refuses the server
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(url, ssl=ssl.create_default_context()):
                pass
        # and plain HTTP gets no answer from a TLS port
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{https_port}/"):
                pass


async def test_a_silent_client_is_dropped_during_the_handshake(https_port: int) -> None:
    # without a handshake limit, asyncio would keep this connection for 60 s
    reader, writer = await asyncio.open_connection("127.0.0.1", https_port)
    try:
        assert await asyncio.wait_for(reader.read(1), BOUND) == b""
    finally:
        writer.close()


# --- server_ssl_context: what is wrong is said, naming the file ------------------------------


def test_a_good_pair_loads_and_is_summarised(certs: TestCerts) -> None:
    context = server_ssl_context(certs.cert, certs.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    summary = certificate_summary(certs.cert)
    assert "127.0.0.1" in summary and "localhost" in summary and "valid until" in summary


def test_a_chain_file_with_the_intermediate_loads(certs: TestCerts, tmp_path: Path) -> None:
    chain = tmp_path / "fullchain.pem"
    chain.write_bytes(certs.cert.read_bytes() + certs.ca.read_bytes())
    server_ssl_context(chain, certs.key)


def test_missing_files_are_named(certs: TestCerts, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match=rf"cannot read TLS certificate {tmp_path}/nope"):
        server_ssl_context(tmp_path / "nope", certs.key)
    with pytest.raises(TlsConfigError, match=rf"cannot read TLS key {tmp_path}/nokey"):
        server_ssl_context(certs.cert, tmp_path / "nokey")
    with pytest.raises(TlsConfigError, match="cannot read TLS certificate"):
        server_ssl_context(tmp_path, certs.key)  # a directory


def test_files_that_are_not_pem_are_named(certs: TestCerts, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TlsConfigError, match=rf"TLS certificate {junk} holds no PEM certificate"):
        server_ssl_context(junk, certs.key)
    with pytest.raises(TlsConfigError, match=rf"TLS key {junk} holds no PEM private key"):
        server_ssl_context(certs.cert, junk)
    # the two swapped: the key file given as certificate
    with pytest.raises(TlsConfigError, match="holds no PEM certificate"):
        server_ssl_context(certs.key, certs.cert)
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(TlsConfigError, match=rf"TLS certificate {broken} is not a valid PEM"):
        server_ssl_context(broken, certs.key)


def test_a_key_of_another_certificate_is_refused(certs: TestCerts, tmp_path: Path) -> None:
    other = write_key(tmp_path / "other.key", new_key())
    with pytest.raises(TlsConfigError,
                       match=rf"TLS key {other} does not match the certificate {certs.cert}"):
        server_ssl_context(certs.cert, other)


def test_an_encrypted_key_is_refused_without_prompting(certs: TestCerts, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(certs.key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(TlsConfigError, match=rf"TLS key {encrypted} is encrypted"):
        server_ssl_context(certs.cert, encrypted)


def test_an_expired_certificate_is_refused(certs: TestCerts, tmp_path: Path) -> None:
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), None)
    server_key = new_key()
    now = datetime.datetime.now(datetime.UTC)
    old = (x509.CertificateBuilder().subject_name(ca.subject).issuer_name(ca.subject)
           .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(days=10))
           .not_valid_after(now - datetime.timedelta(days=1))
           .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    cert = tmp_path / "old.pem"
    cert.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    key = write_key(tmp_path / "old.key", server_key)
    with pytest.raises(TlsConfigError, match=rf"TLS certificate {cert} expired on .*renew it"):
        server_ssl_context(cert, key)


# --- nixshard node --tls-cert/--tls-key --------------------------------------------------------


def node_args(tmp_path: Path, *extra: str) -> list[str]:
    key = new_publisher("tls-test-1")[0].public.text()
    return ["--data", str(tmp_path / "data"), "--listen", f"127.0.0.1:{free_port()}",
            "--accept-publisher", key, "--node-id", "node-1", *extra]


def test_node_needs_both_tls_options(certs: TestCerts, tmp_path: Path) -> None:
    for one in (["--tls-cert", str(certs.cert)], ["--tls-key", str(certs.key)]):
        res = CliRunner().invoke(node_command, node_args(tmp_path, *one))
        assert res.exit_code == 2, res.output
        assert "--tls-cert and --tls-key go together" in res.output


def test_node_refuses_a_mismatched_key_before_it_listens(certs: TestCerts,
                                                          tmp_path: Path) -> None:
    other = write_key(tmp_path / "other.key", new_key())
    res = CliRunner().invoke(node_command, node_args(
        tmp_path, "--tls-cert", str(certs.cert), "--tls-key", str(other)))
    assert res.exit_code == 2, res.output
    assert "--tls-cert/--tls-key" in res.output and "does not match the certificate" in res.output
    assert not (tmp_path / "data").exists()  # refused before the data directory was made

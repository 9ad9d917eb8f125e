"""Test certificates made with ``cryptography``: a CA and a server certificate it signed.

    certs = make_certs(tmp_path)            # ca.pem, server.pem, server.key
    env = {"SSL_CERT_FILE": str(certs.ca)}  # a process started with it trusts the CA

The server certificate names ``127.0.0.1`` (an IP SAN) and ``localhost``, so
clients verifying the host name accept it for ``https://127.0.0.1:PORT``.
Keys are P-256 (fast to make); certificates are valid from an hour ago for a
day.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TestCerts:
    """PEM files of one test PKI.

    Attributes:
        ca: the CA certificate (what clients trust: ``SSL_CERT_FILE``).
        cert: the server certificate (for 127.0.0.1 and localhost).
        key: the server certificate's private key (unencrypted PKCS#8).
        ca_key: the CA's private key.
    """

    __test__ = False  # not a pytest test class

    ca: Path
    cert: Path
    key: Path
    ca_key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption() if password is None
        else serialization.BestAvailableEncryption(password))
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def write_key(path: Path, key: ec.EllipticCurvePrivateKey, password: bytes | None = None
              ) -> Path:
    """Write ``key`` as PEM to ``path`` (encrypted with ``password`` when given); returns it."""
    path.write_bytes(_pem_key(key, password))
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certs(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
               ) -> TestCerts:
    """A CA and a server certificate for ``hosts`` (IP addresses become IP SANs, other
    names DNS SANs), written under ``directory`` (created if missing).

    Returns:
        The paths: ``ca.pem``, ``ca.key``, ``server.pem``, ``server.key``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)
    ca_key, server_key = new_key(), new_key()
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder()
          .subject_name(_name("nixshard test CA")).issuer_name(_name("nixshard test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server = (x509.CertificateBuilder()
              .subject_name(_name(hosts[0])).issuer_name(ca.subject)
              .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(start).not_valid_after(end)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.SubjectAlternativeName(names), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                  server_key.public_key()), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                  ca_ski), critical=False)
              .sign(ca_key, hashes.SHA256()))
    certs = TestCerts(ca=directory / "ca.pem", cert=directory / "server.pem",
                      key=directory / "server.key", ca_key=directory / "ca.key")
    certs.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    write_key(certs.key, server_key)
    write_key(certs.ca_key, ca_key)
    return certs

"""TLS for both servers: the server-side :class:`ssl.SSLContext` from a certificate and its key.

    context = server_ssl_context("/etc/nixshard/tls/fullchain.pem", "/etc/nixshard/tls/key.pem")
    run_app(app, host, port, ssl_context=context)   # http_serving.server

The certificate file holds the server certificate first, then any
intermediate certificates (a "full chain", as ACME clients write it); the
key file holds its unencrypted private key (PEM).  Everything that can be
wrong with them is found here, before the server listens, and reported as a
:class:`TlsConfigError` that names the file: unreadable, not PEM, an
encrypted key (a server cannot ask for its passphrase), a key that does not
match the certificate, a certificate outside its validity period.

The context speaks TLS 1.2 and 1.3 only, with Python's default ciphers, and
asks for no client certificate.  Clients check the certificate against
their trust store: for nixshard's own clients (aiohttp) that is the system
store, or the file named by ``SSL_CERT_FILE`` in the environment the client
process *started* with (aiohttp loads it once, when it is imported).

The ``--tls-cert``/``--tls-key`` options of both servers' commands, and the
context they make, are in :mod:`http_serving.tls_options`.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509

__all__ = ["TlsConfigError", "certificate_summary", "server_ssl_context"]

_CERT_MARK = b"-----BEGIN CERTIFICATE-----"
_KEY_MARK = b"PRIVATE KEY-----"


class TlsConfigError(Exception):
    """A TLS certificate or key that cannot be served; the message names the file and
    what is wrong with it."""


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _load_chain(cert_file: str | Path) -> list[x509.Certificate]:
    data = _read(cert_file, "TLS certificate")
    if _CERT_MARK not in data:
        raise TlsConfigError(f"TLS certificate {cert_file} holds no PEM certificate "
                             f"({_CERT_MARK.decode()})")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TlsConfigError(f"TLS certificate {cert_file} is not a valid PEM certificate "
                             f"chain: {exc}") from exc


def _check_validity(cert: x509.Certificate, cert_file: str | Path,
                    now: datetime.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise TlsConfigError(f"TLS certificate {cert_file} is not valid before "
                             f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the clock)")
    if now > cert.not_valid_after_utc:
        raise TlsConfigError(f"TLS certificate {cert_file} expired on "
                             f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: renew it")


def server_ssl_context(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    """A server-side TLS context serving the certificate chain ``cert_file`` with the
    private key ``key_file`` (both PEM; see the module docstring).

    Raises:
        TlsConfigError: a file cannot be read, holds no PEM certificate or private
            key, the key is encrypted or does not match the certificate, or the
            certificate is expired or not yet valid.
    """
    chain = _load_chain(cert_file)
    _check_validity(chain[0], cert_file, datetime.datetime.now(datetime.UTC))
    if _KEY_MARK not in _read(key_file, "TLS key"):
        raise TlsConfigError(f"TLS key {key_file} holds no PEM private key "
                             f"(-----BEGIN ... {_KEY_MARK.decode()})")

    def no_passphrase() -> str:
        raise TlsConfigError(f"TLS key {key_file} is encrypted: a server cannot ask for its "
                             f"passphrase; give it the key unencrypted (a file only the "
                             f"server's user can read)")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert_file, key_file, password=no_passphrase)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise TlsConfigError(f"TLS key {key_file} does not match the certificate "
                                     f"{cert_file}") from exc
            raise TlsConfigError(f"cannot load TLS certificate {cert_file} with key "
                                 f"{key_file}: {exc.reason or exc}") from exc
        raise TlsConfigError(f"cannot read TLS certificate {cert_file} or key {key_file}: "
                             f"{exc.strerror or exc}") from exc
    return context


def certificate_summary(cert_file: str | Path) -> str:
    """One line about the served certificate, for a server's start-up log: its subject,
    the names it is valid for and when it expires.

    Raises:
        TlsConfigError: as :func:`server_ssl_context` for the certificate file.
    """
    cert = _load_chain(cert_file)[0]
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(v) for v in sans.get_values_for_type(x509.DNSName)] + \
                [str(v) for v in sans.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    return (f"certificate {cert.subject.rfc4514_string()} for "
            f"{', '.join(names) or 'no subject alternative names'}, valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")

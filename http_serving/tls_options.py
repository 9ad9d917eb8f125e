"""The ``--tls-cert``/``--tls-key`` options of both servers' commands (click), and the
TLS context they make (:func:`http_serving.tls.server_ssl_context`).

    @click.command()
    @tls_options
    def serve(tls_cert: Path | None, tls_key: Path | None) -> None:
        context = tls_context_or_exit(tls_cert, tls_key)   # None: plain HTTP
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from .tls import TlsConfigError, server_ssl_context

__all__ = ["tls_context_or_exit", "tls_options"]

F = TypeVar("F", bound=Callable[..., object])


def tls_options(command: F) -> F:
    """Add ``--tls-cert FILE`` and ``--tls-key FILE`` (``tls_cert``, ``tls_key``:
    :class:`~pathlib.Path` or None) to a click command."""
    command = click.option(
        "--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
        metavar="FILE", help="The unencrypted PEM private key of --tls-cert (needs "
                             "--tls-cert).")(command)
    return click.option(
        "--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
        metavar="FILE", help="Serve HTTPS with this PEM certificate (chain) file; needs "
                             "--tls-key.")(command)


def tls_context_or_exit(cert: Path | None, key: Path | None, *,
                        fatal_prefix: str | None = None) -> ssl.SSLContext | None:
    """The server TLS context of ``--tls-cert``/``--tls-key`` (None when neither is given).

    Files that cannot be served (:func:`http_serving.tls.server_ssl_context`: unreadable,
    malformed, encrypted or mismatched key, expired certificate) are a bad
    ``--tls-cert/--tls-key`` parameter (exit 2), or with ``fatal_prefix`` an error
    ``<fatal_prefix><what is wrong>`` (exit 1).

    Raises:
        click.UsageError: only one of them is given.
        click.BadParameter, click.ClickException: the files cannot be served (above).
    """
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise click.UsageError("--tls-cert and --tls-key go together: give both (the PEM "
                               "certificate chain and its private key) or neither")
    try:
        return server_ssl_context(cert, key)
    except TlsConfigError as exc:
        if fatal_prefix is not None:
            raise click.ClickException(f"{fatal_prefix}{exc}") from exc
        raise click.BadParameter(str(exc), param_hint="--tls-cert/--tls-key") from exc

"""The network file and the signing key as the maintenance commands take them.

``repair``, ``gc``, ``status``, ``durability`` and ``network`` read their
``--network FILE`` through :func:`network_or_exit`; those that write
(repair, gc) read ``--signing-key FILE`` through :func:`publisher_or_exit`.
Errors become :class:`click.ClickException` (exit status 1, one line).
"""

from __future__ import annotations

import os

import click

from nix_records import SigningKeyError, load_signing_key
from storage_network import Network, NetworkFileError, Publisher, load_network


def network_or_exit(path: str) -> Network:
    """The network file at ``path``.

    Raises:
        click.ClickException: unreadable or invalid network file.
    """
    try:
        return load_network(path)
    except NetworkFileError as exc:
        raise click.ClickException(str(exc)) from exc


def publisher_or_exit(network: Network, key_file: str) -> Publisher:
    """The publisher of the Nix secret key file ``key_file``, which ``network`` must list.

    Raises:
        click.ClickException: unreadable or malformed key, or a key the
            network file does not list (:mod:`nix_records.signing_key`).
    """
    try:
        key = load_signing_key(key_file, os.environ, network=network)
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    return key.publisher

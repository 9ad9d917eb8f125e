"""The network file and the signing key as the maintenance commands take them.

``repair``, ``gc``, ``status``, ``durability`` and ``network`` read their
``--network FILE`` through :func:`network_or_exit`; those that write
(repair, gc, pin) read ``--signing-key FILE`` through :func:`publisher_or_exit`,
and those that open records (gc, pin) ``--cache-secret FILE`` through
:func:`keyring_or_exit`.  Errors become :class:`click.ClickException` (exit
status 1, one line).
"""

from __future__ import annotations

import os

import click

from nix_records import SecretError, SigningKeyError, load_keyring, load_signing_key
from storage_network import Keyring, Network, NetworkFileError, Publisher
from storage_network.errors import MapError
from storage_network.network_map.source import read_network


def is_http_node(url: str) -> bool:
    """True for our node (``http://``, ``https://``), False for a bucket."""
    return url.partition("://")[0].lower() in ("http", "https")


def network_or_exit(path: str) -> Network:
    """The network ``path`` gives: a network file, a signed network map or a bootstrap
    file (:func:`storage_network.network_map.source.open_network`).

    Raises:
        click.ClickException: unreadable or invalid file, or no node serves a valid map.
    """
    try:
        return read_network(path, os.environ)
    except (NetworkFileError, MapError) as exc:
        raise click.ClickException(str(exc)) from exc


def publisher_or_exit(network: Network, key_file: str | None) -> Publisher:
    """The publisher of the Nix secret key file ``key_file`` (None: the key text in
    ``$NIXSHARD_SIGNING_KEY``), which ``network`` must list.

    Raises:
        click.ClickException: unreadable or malformed key, or a key the
            network file does not list (:mod:`nix_records.signing_key`).
    """
    try:
        key = load_signing_key(key_file, os.environ, network=network)
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    return key.publisher


def keyring_or_exit(network: Network, cache_secret: str | None, *,
                    optional: bool = False) -> Keyring | None:
    """The keyring of a private ``network``: file ``cache_secret``, else the keyring text
    in ``$NIXSHARD_CACHE_SECRET``; None for a public network.

    Args:
        optional: a private network without a secret gives None instead of an error
            (gc then reads the links records carry in the clear).

    Raises:
        click.ClickException: a private network without a secret (unless
            ``optional``), a secret for a public one, an unreadable or malformed
            keyring (:mod:`nix_records.cache_secret`).
    """
    try:
        return load_keyring(cache_secret, os.environ, network, optional=optional)
    except SecretError as exc:
        raise click.ClickException(str(exc)) from exc

"""What the maintenance commands (repair, status, durability, network) share at the entry point."""

from __future__ import annotations

import click

from storage_network import Network, NetworkFileError, Publisher, load_network
from uploader.cli import check_publisher, load_signing_key


def network_or_exit(path: str) -> Network:
    """Load the network file, turning its errors into a clean CLI error.

    Raises:
        click.ClickException: unreadable or invalid network file.
    """
    try:
        return load_network(path)
    except NetworkFileError as exc:
        raise click.ClickException(str(exc)) from exc


def publisher_or_exit(network: Network, key_file: str) -> Publisher:
    """The publisher of a Nix-format secret key file that ``network`` lists.

    Raises:
        click.ClickException: unreadable key, or a key the network file does not list.
    """
    _, publisher = load_signing_key(key_file)
    check_publisher(network, publisher)
    return publisher

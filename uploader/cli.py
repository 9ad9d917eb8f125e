"""``nixshard push``: the only place the uploader reads its configuration."""

from __future__ import annotations

import asyncio
import os

import click

from nix_formats.keys import SecretKey
from storage_network.auth import Publisher
from storage_network.errors import NetworkFileError
from storage_network.network_client import NetworkClient
from storage_network.network_file import Network, load_network

from . import signing
from .closure import PathInfo, query_closure
from .errors import SigningKeyError, UploaderError
from .push import PushSummary, format_summary, push_closure


def load_signing_key(path: str | None) -> tuple[SecretKey, Publisher]:
    """The signing key (file ``path``, else ``$NIXSHARD_SIGNING_KEY``) as Nix key and publisher.

    Raises:
        click.ClickException: no key, unreadable or malformed key (see
            :func:`uploader.signing.load_signing_key`).
    """
    try:
        return signing.load_signing_key(path, os.environ)
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc


def check_publisher(network: Network, publisher: Publisher) -> None:
    """Refuse early when the network file does not list the signing key's public half."""
    known = network.publishers.get(publisher.name)
    if known is None or bytes(known.verify_key) != bytes(publisher.signing_key.verify_key):
        raise click.ClickException(
            f"the network file does not list publisher key {publisher.public.text()}; "
            "add it to `publishers` (nodes and readers accept only listed keys)")


async def run_push(network: Network, infos: list[PathInfo], nix_key: SecretKey,
                   publisher: Publisher) -> PushSummary:
    """Push ``infos`` (references first) over a fresh network client."""
    async with NetworkClient(network) as net:
        return await push_closure(net, infos, nix_key, publisher)


@click.command("push")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML).")
@click.option("--signing-key", type=click.Path(dir_okay=False), default=None,
              help="Secret key file made by `nix-store --generate-binary-cache-key` "
                   "[default: the key text in $NIXSHARD_SIGNING_KEY].")
@click.argument("store_paths", nargs=-1, required=True)
def push_command(network_file: str, signing_key: str | None, store_paths: tuple[str, ...]) -> None:
    """Push the closures of STORE_PATHS into the network, references first."""
    try:
        network = load_network(network_file)
    except NetworkFileError as exc:
        raise click.ClickException(str(exc)) from exc
    nix_key, publisher = load_signing_key(signing_key)
    check_publisher(network, publisher)
    try:
        infos = query_closure(list(store_paths))
        summary = asyncio.run(run_push(network, infos, nix_key, publisher))
    except UploaderError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(format_summary(summary, network.k, network.m))

"""``nixshard serve``: the only place the daemon reads its configuration."""

from __future__ import annotations

import logging

import click
from aiohttp import web

from storage_network.addresses import parse_host_port
from storage_network.errors import NetworkFileError
from storage_network.network_file import load_network

from .app import create_app
from .config import ServeConfig


@click.command("serve")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML).")
@click.option("--listen", default="127.0.0.1:5000", show_default=True, help="HOST:PORT.")
@click.option("--priority", default=30, show_default=True,
              help="Priority in nix-cache-info (lower wins; cache.nixos.org is 40).")
@click.option("--node-timeout", default=10.0, show_default=True,
              help="Seconds per request to a node.")
@click.option("--prefetch", default=8, show_default=True,
              help="Chunks fetched ahead of the one being sent.")
def serve_command(network_file: str, listen: str, priority: int, node_timeout: float,
                  prefetch: int) -> None:
    """Serve the Nix binary-cache protocol from the shard network."""
    try:
        host, port = parse_host_port(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from exc
    try:
        network = load_network(network_file)
    except NetworkFileError as exc:
        raise click.ClickException(str(exc)) from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = ServeConfig(network=network, priority=priority, node_timeout=node_timeout,
                         prefetch=prefetch)
    click.echo(f"nixshard serve: http://{host}:{port} ({network.k}-of-{network.n}, "
               f"{len(network.nodes)} nodes)")
    web.run_app(create_app(config), host=host, port=port, print=None)

"""``nixshard serve``: the only place the daemon reads its configuration."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from aiohttp import web

from storage_network.addresses import parse_host_port
from storage_network.errors import NetworkFileError
from storage_network.network_client import DEFAULT_HEDGE_AFTER
from storage_network.network_file import load_network
from storage_network.scores import Scores, ScoresFileError, default_scores_path

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
@click.option("--scores", "scores_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="Audit scores file written by `nixshard audit`; orders reads among nodes "
                   "in good standing.  [default: $XDG_STATE_HOME/nixshard/scores.json if it "
                   "exists]")
@click.option("--hedge-after", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_HEDGE_AFTER, show_default=True, metavar="SECONDS",
              help="Seconds a chunk waits for its first k shards before asking one more node.")
def serve_command(network_file: str, listen: str, priority: int, node_timeout: float,
                  prefetch: int, scores_file: Path | None, hedge_after: float) -> None:
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
    scores = load_scores(scores_file)
    config = ServeConfig(network=network, priority=priority, node_timeout=node_timeout,
                         prefetch=prefetch, scores=scores, hedge_after=hedge_after)
    click.echo(f"nixshard serve: http://{host}:{port} ({network.k}-of-{network.n}, "
               f"{len(network.nodes)} nodes)")
    web.run_app(create_app(config), host=host, port=port, print=None)


def load_scores(path: Path | None) -> Scores | None:
    """The audit scores of ``--scores``, else of the default file if it exists, else None.

    A ``--scores`` file that does not exist yet gives empty scores (logged).

    Raises:
        click.ClickException: the file exists but is unreadable or malformed.
    """
    if path is None:
        default = default_scores_path()
        if not default.is_file():
            return None
        path = default
    elif not path.exists():
        logging.getLogger("nixshard.serve").warning(
            "scores file %s does not exist (yet): every node scores 1.0", path)
    try:
        return Scores.load(path)
    except ScoresFileError as exc:
        raise click.ClickException(str(exc)) from exc

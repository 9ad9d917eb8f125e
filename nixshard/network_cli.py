"""``nixshard network init|add-node|remove-node``: write and change network files."""

from __future__ import annotations

from pathlib import Path

import click

from storage_network import PublisherKey, parse_publisher_key
from storage_network.config import ChunkingParams, NodeInfo, init_network, write_network
from storage_network.errors import AuthError, NetworkFileError
from storage_network.upkeep.membership import with_node, without_node

from .cli_options import network_or_exit


@click.group("network")
def network_group() -> None:
    """Create and inspect network files."""


def _read_key(value: str) -> PublisherKey:
    text = Path(value).read_text().strip() if Path(value).is_file() else value
    try:
        return parse_publisher_key(text)
    except AuthError as exc:
        raise click.BadParameter(f"{value}: {exc}") from exc


@network_group.command("init")
@click.option("--node", "nodes", multiple=True, required=True,
              help="A node's base URL (repeat, in any order).")
@click.option("-k", "k", type=int, required=True, help="Data shards per chunk.")
@click.option("-m", "m", type=int, required=True, help="Parity shards per chunk.")
@click.option("--publisher", "publishers", multiple=True, required=True,
              help="Publisher public key, name:base64 or a file holding it (repeatable).")
@click.option("--record-replicas", type=int, default=None,
              help="Nodes holding each record [default: max(3, m + 1), at most the node count].")
@click.option("--chunk-avg", type=int, default=ChunkingParams().avg_size, show_default=True,
              help="Average chunk size, bytes (min = avg/4, max = avg*4).")
@click.option("--zstd-level", type=int, default=3, show_default=True)
@click.option("--private", is_flag=True,
              help="A private cache: nodes hold only ciphertext; publishers and gateways "
                   "need the cache secret (`nixshard key generate-cache-secret`).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Where to write the network file.")
def init_command(nodes: tuple[str, ...], k: int, m: int, publishers: tuple[str, ...],
                 record_replicas: int | None, chunk_avg: int, zstd_level: int,
                 private: bool, output: str) -> None:
    """Write a network file for NODES with k-of-(k+m) coding."""
    extra: dict[str, object] = {"record_replicas": record_replicas} if record_replicas else {}
    if private:
        extra["private"] = True
    try:
        network = init_network(
            nodes, k, m, [_read_key(p) for p in publishers], **extra,
            zstd_level=zstd_level,
            chunking=ChunkingParams(chunk_avg // 4, chunk_avg, chunk_avg * 4))
    except NetworkFileError as exc:
        raise click.ClickException(str(exc)) from exc
    write_network(network, output)
    click.echo(f"wrote {output}: {len(nodes)} nodes, {k}-of-{k + m}, "
               f"{len(network.publishers)} publisher key(s)"
               + (", private" if private else ""))


@network_group.command("add-node")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file to change (rewritten atomically).")
@click.option("--id", "node_id", required=True,
              help="The new node's id (stable; used for placement).")
@click.option("--url", required=True, help="The new node's base URL, http(s)://host:port.")
def add_node_command(network_file: str, node_id: str, url: str) -> None:
    """Add a node.  Readers keep working; new writes use it at once; run
    `nixshard repair` to copy records to their new replicas."""
    try:
        network = with_node(network_or_exit(network_file), NodeInfo(node_id, url))
    except NetworkFileError as exc:
        raise click.ClickException(str(exc)) from exc
    write_network(network, network_file)
    click.echo(f"{network_file}: added {node_id} ({url}); {len(network.nodes)} nodes")


@network_group.command("remove-node")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file to change (rewritten atomically).")
@click.argument("node_id")
def remove_node_command(network_file: str, node_id: str) -> None:
    """Remove node NODE_ID.  Its shards count as lost: run `nixshard repair` to rebuild
    them elsewhere before removing another (never more than m between two repairs)."""
    try:
        network = without_node(network_or_exit(network_file), node_id)
    except NetworkFileError as exc:
        raise click.ClickException(str(exc)) from exc
    write_network(network, network_file)
    click.echo(f"{network_file}: removed {node_id}; {len(network.nodes)} nodes; "
               "run `nixshard repair` now")

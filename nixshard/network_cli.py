"""``nixshard network init|add-node|remove-node``: write and change network files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from storage_network import PublisherKey, parse_publisher_key
from storage_network.config import (
    NODE_ID_RE,
    PLACEMENTS,
    ChunkingParams,
    NodeInfo,
    init_network,
    write_network,
)
from storage_network.errors import AuthError, NetworkFileError
from storage_network.upkeep.membership import with_node, without_node

from .cli_options import is_http_node, network_or_exit


@click.group("network")
def network_group() -> None:
    """Create and inspect network files."""


def _read_key(value: str) -> PublisherKey:
    text = Path(value).read_text().strip() if Path(value).is_file() else value
    try:
        return parse_publisher_key(text)
    except AuthError as exc:
        raise click.BadParameter(f"{value}: {exc}") from exc


def parse_node_specs(specs: tuple[str, ...]) -> list[NodeInfo]:
    """The nodes of ``network init``'s ``--node`` values, in the order given.

    Each value is ``ID=URL`` (the id the node runs with, ``--node-id``) or a
    plain URL, whose id is then ``node-N`` for the N-th ``--node``.  A value is
    ``ID=URL`` when the text before its first ``=`` is a valid node id
    (:data:`~storage_network.config.NODE_ID_RE`); a URL never is (it holds
    ``://``), so an ``s3://...?endpoint=...`` URL stays a plain URL.

    Raises:
        click.BadParameter: an empty id or URL, a malformed id, an id or a URL
            given twice (the message names them).
    """
    nodes = []
    for position, spec in enumerate(specs, 1):
        head, eq, tail = spec.partition("=")
        if eq and "://" not in head:
            node_id, url = head.strip(), tail.strip()
            if not NODE_ID_RE.fullmatch(node_id):
                raise click.BadParameter(
                    f"{spec!r}: node id {node_id!r} must be 1-64 letters, digits, '.', '_' "
                    "or '-', starting with a letter or digit", param_hint="--node")
            if not url:
                raise click.BadParameter(f"{spec!r}: no URL after '='", param_hint="--node")
        else:
            node_id, url = f"node-{position}", spec.strip()
        nodes.append(NodeInfo(node_id, url.rstrip("/")))
    for attr, what in (("id", "id"), ("url", "URL")):
        seen: dict[str, int] = {}
        for position, node in enumerate(nodes, 1):
            value = getattr(node, attr)
            if value in seen:
                hint = (" (a plain URL takes the id node-N of its position: give every node "
                        "as ID=URL)" if attr == "id" else "")
                raise click.BadParameter(
                    f"{what} {value!r} is given by --node number {seen[value]} and number "
                    f"{position}{hint}", param_hint="--node")
            seen[value] = position
    return nodes


@network_group.command("init")
@click.option("--node", "nodes", multiple=True, required=True, metavar="ID=URL|URL",
              help="A node: ID=URL, its id (the --node-id it runs with) and base URL, or a "
                   "plain URL, whose id is then node-N for the N-th --node. Repeat; ids "
                   "follow the order given.")
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
@click.option("--placement", type=click.Choice(PLACEMENTS), default="groups",
              show_default=True,
              help="groups: placement groups, weighted by capacity, a stripe spread over "
                   "the nodes' operators then zones (give each [[nodes]] entry an operator "
                   "in the file); rendezvous: every node hashed per chunk (files written "
                   "before placement groups).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Where to write the network file.")
def init_command(nodes: tuple[str, ...], k: int, m: int, publishers: tuple[str, ...],
                 record_replicas: int | None, chunk_avg: int, zstd_level: int,
                 private: bool, placement: str, output: str) -> None:
    """Write a network file for the --node nodes with k-of-(k+m) coding.

    A node's id is what placement ranks and what every signed write names: start
    each node with --node-id set to its id here.
    """
    infos = parse_node_specs(nodes)
    extra: dict[str, Any] = {"record_replicas": record_replicas} if record_replicas else {}
    if private:
        extra["private"] = True
    try:
        network = init_network(
            [n.url for n in infos], k, m, [_read_key(p) for p in publishers], **extra,
            zstd_level=zstd_level, placement=placement,
            chunking=ChunkingParams(chunk_avg // 4, chunk_avg, chunk_avg * 4))
        network = dataclasses.replace(network, nodes=tuple(infos)).validate()
    except NetworkFileError as exc:
        raise click.ClickException(str(exc)) from exc
    write_network(network, output)
    click.echo(f"wrote {output}: {len(nodes)} nodes, {k}-of-{k + m}, "
               f"{len(network.publishers)} publisher key(s)"
               + (", private" if private else ""))
    for node in network.nodes:
        click.echo(f"  {node.id} = {node.url}"
                   + (f"   (start it with --node-id {node.id})" if is_http_node(node.url)
                      else ""))


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

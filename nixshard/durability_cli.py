"""``nixshard durability``: loss odds for the network's k and n, next to 3x replication,
and (with a network file) the worst losses its placement survives."""

from __future__ import annotations

import json

import click

from storage_network.config import ChunkingParams
from storage_network.nodes.placement_tolerance import LossTolerance, loss_tolerance
from storage_network.upkeep.durability import durability_table

from .cli_options import network_or_exit

GiB = 1024 ** 3
DEFAULT_PS = (0.001, 0.01, 0.05, 0.1)


@click.command("durability")
@click.option("--network", "network_file", type=click.Path(dir_okay=False),
              help="Take k, m and the average chunk size from this network file.")
@click.option("-k", "k", type=click.IntRange(min=1), help="Data shards per chunk.")
@click.option("-m", "m", type=click.IntRange(min=0), help="Parity shards per chunk.")
@click.option("-p", "ps", type=click.FloatRange(0.0, 1.0), multiple=True,
              help="Probability that a node is lost within one repair interval "
                   f"(repeatable) [default: {', '.join(map(str, DEFAULT_PS))}].")
@click.option("--nar-bytes", type=click.IntRange(min=1), default=GiB, show_default=True,
              help="Size of the NAR whose loss odds are shown, bytes.")
@click.option("--chunk-bytes", type=click.IntRange(min=1), default=None,
              help="Average chunk size, bytes [default: the network file's, else 256 KiB].")
@click.option("--copies", type=click.IntRange(min=1), default=3, show_default=True,
              help="Replication factor to compare with.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def durability_command(network_file: str | None, k: int | None, m: int | None,
                       ps: tuple[float, ...], nar_bytes: int, chunk_bytes: int | None,
                       copies: int, as_json: bool) -> None:
    """Print the probability of losing a chunk and a NAR within one repair interval.

    Nodes are lost independently with probability p; a k-of-n chunk is lost
    when more than m = n - k of its shards are; a NAR when any of its chunks
    is (an upper bound on a network wider than n; exact on one of n nodes).
    Storage overhead is n/k for erasure coding and COPIES for replication.
    With --network, also the worst case the network's placement survives:
    how many whole operators, or how many nodes, may be lost at once.
    """
    avg = ChunkingParams().avg_size
    nodes = None
    tolerance: LossTolerance | None = None
    if network_file is not None:
        network = network_or_exit(network_file)
        k, m, avg, nodes = network.k, network.m, network.chunking.avg_size, len(network.nodes)
        tolerance = loss_tolerance(network)
    if k is None or m is None:
        raise click.UsageError("give --network FILE, or -k and -m")
    rows = durability_table(k, m, list(ps or DEFAULT_PS), nar_bytes, chunk_bytes or avg, copies,
                            nodes)
    if as_json:
        doc = {"k": k, "m": m, "copies": copies, "nar_bytes": nar_bytes,
               "rows": [vars(r) for r in rows]}
        if tolerance is not None:
            doc["survives"] = tolerance.to_json()
        click.echo(json.dumps(doc, indent=1))
        return
    if tolerance is not None:
        click.echo(f"placement: {tolerance.sentence()}")
    click.echo(f"{k}-of-{k + m} (overhead {(k + m) / k:.2f}x) vs {copies}x replication "
               f"(overhead {copies}x); NAR of {nar_bytes} bytes in "
               f"{-(-nar_bytes // (chunk_bytes or avg))} chunks")
    click.echo(f"{'p':>8}  {'chunk k-of-n':>13}  {'NAR k-of-n':>11}  "
               f"{f'chunk {copies}x':>11}  {f'NAR {copies}x':>10}")
    for r in rows:
        click.echo(f"{r.p:>8g}  {r.chunk:>13.3g}  {r.nar:>11.3g}  "
                   f"{r.replica_chunk:>11.3g}  {r.replica_nar:>10.3g}")

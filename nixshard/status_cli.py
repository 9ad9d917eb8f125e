"""``nixshard status``: each node's health, audit score, shards, bytes and free space."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import click

from storage_network import Network, NetworkClient, NodeError
from storage_network.nodes.scores import Scores, ScoresFileError, default_scores_path

from .cli_options import network_or_exit


async def node_status(network: Network, scores: Scores, timeout: float) -> list[dict[str, Any]]:
    """One row per node: ``id, url, health ("ok"/"unreachable"), latency_ms, score,
    shards, shard_bytes, records, free_bytes, error``."""
    async with NetworkClient(network, timeout=timeout) as net:
        async def one(node_id: str) -> dict[str, Any]:
            started = time.monotonic()
            row: dict[str, Any] = {"id": node_id, "url": net.nodes[node_id].url,
                                   "score": scores.score(node_id)}
            try:
                health = await net.nodes[node_id].health()
            except NodeError as exc:
                return {**row, "health": "unreachable", "error": str(exc)}
            row.update(health="ok", latency_ms=round((time.monotonic() - started) * 1000, 1))
            for key in ("shards", "shard_bytes", "records", "free_bytes"):
                row[key] = health.get(key)
            return row

        return list(await asyncio.gather(*(one(n.id) for n in network.nodes)))


@click.command("status")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML).")
@click.option("--scores", "scores_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Audit scores file [default: $XDG_STATE_HOME/nixshard/"
                                 "scores.json].")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds to wait for each node.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(network_file: str, scores_path: Path | None, timeout: float,
                   as_json: bool) -> None:
    """Show each node's health, audit score, shard count, bytes stored and free space.

    Exit status 1 when a node does not answer.
    """
    network = network_or_exit(network_file)
    try:
        scores = Scores.load(scores_path or default_scores_path())
    except ScoresFileError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = asyncio.run(node_status(network, scores, timeout))
    if as_json:
        click.echo(json.dumps({"k": network.k, "m": network.m, "nodes": rows}, indent=1))
    else:
        click.echo(f"{network.k}-of-{network.n}, {len(network.nodes)} nodes")
        note = network.roles_note()
        if note is not None:
            click.echo(note)
        click.echo(f"{'node':<16} {'health':<12} {'score':>5} {'shards':>8} "
                   f"{'bytes':>14} {'free':>16}")
        for r in rows:
            click.echo(f"{r['id']:<16} {r['health']:<12} {r['score']:>5.2f} "
                       f"{r.get('shards', '-')!s:>8} {r.get('shard_bytes', '-')!s:>14} "
                       f"{r.get('free_bytes', '-')!s:>16}"
                       + (f"  {r['error']}" if "error" in r else ""))
    if any(r["health"] != "ok" for r in rows):
        raise SystemExit(1)

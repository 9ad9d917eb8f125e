"""``nixshard status``: each node's health, audit score, shards, bytes and free space,
and the worst losses the network's placement survives."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import click

from storage_network import Network, NetworkClient, NodeError
from storage_network.nodes.placement_tolerance import loss_tolerance
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
            row["usage"] = _usage_map(health.get("usage"))
            return row

        return list(await asyncio.gather(*(one(n.id) for n in network.nodes)))


def _usage_map(value: Any) -> dict[str, int]:
    """A node's ``/healthz`` ``usage`` (publisher key name -> bytes charged there,
    :mod:`storage_node.usage`), keeping only well-formed entries (a node's answer is
    hostile input); {} when absent (an older node, or a bucket)."""
    if not isinstance(value, dict):
        return {}
    return {name[:200]: size for name, size in list(value.items())[:1000]
            if isinstance(name, str) and type(size) is int and size >= 0}


def publisher_usage(network: Network, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per publisher key name (those with a quota in the network file, and those a
    node charges): ``{"quota": bytes per node or None, "most": bytes on the node
    where it keeps most, "node": that node's id or None, "total": bytes over the
    nodes that answered, "over": ids of the nodes where it keeps more than its
    quota}``.  A quota bounds one node, so ``most`` is what to compare with it."""
    names = set(network.quotas) | {name for r in rows for name in r.get("usage", {})}
    report: dict[str, dict[str, Any]] = {}
    for name in sorted(names):
        quota = network.quotas.get(name)
        per_node = {r["id"]: r.get("usage", {}).get(name, 0) for r in rows
                    if r["health"] == "ok"}
        node = max(per_node, key=lambda n: per_node[n], default=None)
        most = per_node[node] if node is not None else 0
        report[name] = {"quota": quota, "most": most, "node": node if most else None,
                        "total": sum(per_node.values()),
                        "over": sorted(n for n, used in per_node.items()
                                       if quota is not None and used > quota)}
    return report


def format_publisher_usage(report: dict[str, dict[str, Any]]) -> list[str]:
    """The lines of :func:`publisher_usage` for a terminal (none when it is empty)."""
    if not report:
        return []
    lines = [f"{'publisher':<24} {'quota per node':>14} {'most on one node':>26} "
             f"{'total':>14}"]
    for name, u in report.items():
        quota = "none" if u["quota"] is None else str(u["quota"])
        most = str(u["most"]) + (f" ({u['node']})" if u["node"] else "")
        over = f"  OVER QUOTA on {', '.join(u['over'])}" if u["over"] else ""
        lines.append(f"{name:<24} {quota:>14} {most:>26} {u['total']:>14}{over}")
    return lines


@click.command("status")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML), a signed network map or a bootstrap file.")
@click.option("--scores", "scores_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Audit scores file [default: $XDG_STATE_HOME/nixshard/"
                                 "scores.json].")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds to wait for each node.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(network_file: str, scores_path: Path | None, timeout: float,
                   as_json: bool) -> None:
    """Show each node's health, audit score, shard count, bytes stored and free space,
    and the worst case the placement survives (whole operators or nodes lost at once);
    for a network map, the epoch in use (the newest any node served).

    Exit status 1 when a node does not answer.
    """
    network = network_or_exit(network_file)
    try:
        scores = Scores.load(scores_path or default_scores_path())
    except ScoresFileError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = asyncio.run(node_status(network, scores, timeout))
    tolerance = loss_tolerance(network)
    epoch = network.follow.trusted.epoch if network.follow is not None else None
    if as_json:
        click.echo(json.dumps({"k": network.k, "m": network.m, "epoch": epoch,
                               "survives": tolerance.to_json(), "nodes": rows}, indent=1))
    else:
        click.echo(("" if epoch is None else f"network map epoch {epoch}: ")
                   + f"{network.k}-of-{network.n}, {len(network.nodes)} nodes, "
                   f"{network.placement} placement: {tolerance.sentence()}")
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
        for line in format_publisher_usage(publisher_usage(network, rows)):
            click.echo(line)
    if any(r["health"] != "ok" for r in rows):
        raise SystemExit(1)

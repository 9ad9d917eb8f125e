"""``nixshard gc``: expire records by age or last read, delete unreferenced shards.

See :mod:`storage_network.upkeep.gc` for what is deleted and why a push running
meanwhile loses nothing, and docs/gc.md for the operator's view.
"""

from __future__ import annotations

import asyncio
import json
import re

import click

from storage_network import Network, NetworkClient, Publisher
from storage_network.upkeep.gc import collect_garbage
from storage_network.upkeep.gc_report import GcReport
from uploader.push import format_bytes

from .cli_options import network_or_exit, publisher_or_exit

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"\A(\d+(?:\.\d+)?)([smhdw]?)\Z")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or ``600``.

    Raises:
        ValueError: anything else.
    """
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 90m, 45s or 2w")
    return float(match[1]) * _UNITS[match[2] or "s"]


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Click callback: a duration option's text as seconds."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


def format_report(report: GcReport) -> str:
    """The report as text for a terminal."""
    would = "would be " if report.dry_run else ""
    lines = [f"gc{' (dry run)' if report.dry_run else ''}: "
             f"{len(report.expired)} records {would}expired, "
             f"{report.deleted_shards} shards ({format_bytes(report.deleted_bytes)}) "
             f"{would}deleted, "
             f"{report.live_stripes} stripes live"]
    for exp in report.expired:
        lines.append(f"  record {exp.key}: {exp.reason} (nodes {', '.join(exp.nodes)})")
    for kept in report.kept_records:
        lines.append(f"  record {kept.key} kept on node {kept.node}: {kept.reason}")
    for node_id, sweep in sorted(report.nodes.items()):
        lines.append(f"  {node_id}: {len(sweep.deleted)} shards, "
                     f"{format_bytes(sweep.deleted_bytes)} {would}deleted; "
                     f"{sweep.kept_recent} unreferenced kept as recent")
        lines.extend(f"    error: {err}" for err in sweep.errors)
    lines.extend(f"  skipped: {why}" for why in report.skipped)
    return "\n".join(lines)


async def run_gc(network: Network, publisher: Publisher, *, max_age: float | None,
                 max_idle: float | None, grace: float, dry_run: bool,
                 force: bool) -> GcReport:
    """One collection over a fresh network client."""
    async with NetworkClient(network) as net:
        return await collect_garbage(net, publisher, max_age=max_age, max_idle=max_idle,
                                     grace=grace, dry_run=dry_run, force=force)


@click.command("gc")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML).")
@click.option("--signing-key", required=True, type=click.Path(dir_okay=False),
              help="Secret key file of a publisher the nodes accept (signs the deletes).")
@click.option("--max-age", default=None, callback=_duration, metavar="DURATION",
              help="Expire records created longer ago than this (e.g. 90d).")
@click.option("--max-idle", default=None, callback=_duration, metavar="DURATION",
              help="Expire records nobody fetched for longer than this (e.g. 30d).")
@click.option("--grace", default=None, callback=_duration, metavar="DURATION",
              help="Keep unreferenced shards written or touched more recently than this "
                   "(default: the network file's gc_grace_seconds).")
@click.option("--dry-run", is_flag=True, help="List what would go; delete nothing.")
@click.option("--force", is_flag=True,
              help="Delete shards even when some node or record could not be read.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def gc_command(network_file: str, signing_key: str, max_age: float | None,
               max_idle: float | None, grace: float | None, dry_run: bool, force: bool,
               as_json: bool) -> None:
    """Expire records by age or last read; delete shards no record references."""
    network = network_or_exit(network_file)
    publisher = publisher_or_exit(network, signing_key)
    if grace is None:
        grace = float(network.gc_grace_seconds)
    elif grace < network.gc_grace_seconds:
        click.echo(f"warning: --grace is below the network's gc_grace_seconds "
                   f"({network.gc_grace_seconds} s): a push running now may lose shards",
                   err=True)
    report = asyncio.run(run_gc(network, publisher, max_age=max_age, max_idle=max_idle,
                                grace=grace, dry_run=dry_run, force=force))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(format_report(report))

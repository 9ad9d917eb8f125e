"""``nixshard gc``: expire records by age or last read, delete unreferenced shards.

See :mod:`storage_network.upkeep.gc` for what is deleted and why a push running
meanwhile loses nothing, and docs/gc.md for the operator's view.  Expiring
records (``--max-age``, ``--max-idle``) keeps closures whole: the records that
stay and the pins keep every path they reference, read by
:func:`nix_records.retention.record_links`.  In a private network the
narinfos are sealed: with the cache secret they are opened; without it the
links each record carries in the clear (keyed keys) are read
(:func:`nix_records.retention.sealed_record_links`), and records sealed
before they were written leave the closure incomplete (nothing expires
unless ``--force``).
"""

from __future__ import annotations

import asyncio
import json

import click

from nix_records import CACHE_SECRET_ENV, record_links
from nix_records.retention import sealed_record_links
from storage_network import Keyring, Network, NetworkClient, Publisher
from storage_network.errors import RecordTableError
from storage_network.upkeep.gc import collect_garbage
from storage_network.upkeep.gc_report import GcReport
from uploader.lease import parse_duration
from uploader.push import format_bytes

from .cli_options import keyring_or_exit, network_or_exit, publisher_or_exit


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Click callback: a duration option's text as seconds."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


def _named(key: str, label: str | None) -> str:
    return f"{key} ({label})" if label and label != key else key


def format_report(report: GcReport) -> str:
    """The report as text for a terminal: what goes and why, what stays and why."""
    would = "would be " if report.dry_run else ""
    lines = [f"gc{' (dry run)' if report.dry_run else ''}: "
             f"{report.expired_total} records {would}expired, "
             f"{report.retained_total} due but kept, "
             f"{report.deleted_shards} shards ({format_bytes(report.deleted_bytes)}) "
             f"{would}deleted, "
             f"{report.live_stripes} stripes live"]
    verb = "would expire" if report.dry_run else "expired"
    for exp in report.expired:
        nodes = f" (nodes {', '.join(exp.nodes)})" if exp.nodes else ""
        lines.append(f"  {verb} record {_named(exp.key, exp.label)}: {exp.reason}{nodes}")
    if report.expired_total > len(report.expired):
        lines.append(f"  ... and {report.expired_total - len(report.expired)} more expired "
                     "records (each is in the log)")
    for ret in report.retained:
        lines.append(f"  keep record {_named(ret.key, ret.label)}: {ret.why} "
                     f"(due by {ret.expiry})")
    if report.retained_total > len(report.retained):
        lines.append(f"  ... and {report.retained_total - len(report.retained)} more records "
                     "due but kept")
    for pin in report.pins:
        lines.append(f"  pin {pin.name}: {pin.paths} paths, keeps {pin.closure} records")
    for kept in report.kept_records:
        lines.append(f"  record {kept.key} kept on node {kept.node}: {kept.reason}")
    for node_id, sweep in sorted(report.nodes.items()):
        lines.append(f"  {node_id}: {sweep.deleted_count} unreferenced shards, "
                     f"{format_bytes(sweep.deleted_bytes)} {would}deleted; "
                     f"{sweep.kept_recent} unreferenced kept as recent")
        lines.extend(f"    error: {err}" for err in sweep.errors)
    lines.extend(f"  skipped: {why}" for why in report.skipped)
    return "\n".join(lines)


def gc_keyring(network: Network, cache_secret: str | None) -> Keyring | None:
    """The keyring gc opens records with: a private network's, if one is given.

    Args:
        cache_secret: the ``--cache-secret`` file, or None for ``$NIXSHARD_CACHE_SECRET``.

    Returns:
        None on a public network, or on a private one without a secret (gc then
        reads the links records carry in the clear).

    Raises:
        click.ClickException: a secret for a public network; an unreadable or
            malformed keyring.
    """
    return keyring_or_exit(network, cache_secret, optional=True)


SEALED_NOTE = ("note: private network read without the cache secret: what each record "
               "references comes from the keyed links it carries in the clear, and records "
               "are named by their keyed keys; a record sealed before links were written "
               "(sealed metadata version 1) leaves the closure incomplete, and then no "
               "record expires unless --force (or give --cache-secret)")


async def run_gc(network: Network, publisher: Publisher, *, max_age: float | None,
                 max_idle: float | None, grace: float, dry_run: bool,
                 force: bool, keyring: Keyring | None = None) -> GcReport:
    """One collection over a fresh network client (holding ``keyring``, if any).

    When records may expire (``max_age`` or ``max_idle``), their closures are
    kept: :func:`nix_records.retention.record_links`, or on a private network
    without ``keyring`` :func:`nix_records.retention.sealed_record_links`.
    """
    expiring = max_age is not None or max_idle is not None
    reader = sealed_record_links if network.private and keyring is None else record_links
    async with NetworkClient(network, keyring=keyring) as net:
        return await collect_garbage(net, publisher, max_age=max_age, max_idle=max_idle,
                                     grace=grace, dry_run=dry_run, force=force,
                                     links=reader if expiring else None)


@click.command("gc")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML), a signed network map or a bootstrap file.")
@click.option("--signing-key", required=True, type=click.Path(dir_okay=False),
              help="Secret key file of a publisher the nodes accept (signs the deletes).")
@click.option("--max-age", default=None, callback=_duration, metavar="DURATION",
              help="Expire records created longer ago than this (e.g. 90d).")
@click.option("--max-idle", default=None, callback=_duration, metavar="DURATION",
              help="Expire records nobody fetched for longer than this (e.g. 30d).")
@click.option("--grace", default=None, callback=_duration, metavar="DURATION",
              help="Keep unreferenced shards written or touched more recently than this "
                   "(default: the network file's gc_grace_seconds).")
@click.option("--cache-secret", type=click.Path(dir_okay=False), default=None,
              help="Keyring file of a private network (optional): with it, which paths "
                   "the kept ones reference is read from the opened narinfos, and reports "
                   "name store paths; without it, from the keyed links records carry.  "
                   f"[default: the keyring text in ${CACHE_SECRET_ENV}, if set]")
@click.option("--dry-run", is_flag=True,
              help="List what would go and what stays, and why; delete nothing.")
@click.option("--force", is_flag=True,
              help="Expire records and delete shards even when some node or record "
                   "could not be read.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def gc_command(network_file: str, signing_key: str, max_age: float | None,
               max_idle: float | None, grace: float | None, cache_secret: str | None,
               dry_run: bool, force: bool, as_json: bool) -> None:
    """Expire records by age or last read, keeping every path a kept path or a pin
    references; delete shards no record references."""
    network = network_or_exit(network_file)
    publisher = publisher_or_exit(network, signing_key)
    keyring = gc_keyring(network, cache_secret)
    if grace is None:
        grace = float(network.gc_grace_seconds)
    elif grace < network.gc_grace_seconds:
        click.echo(f"warning: --grace is below the network's gc_grace_seconds "
                   f"({network.gc_grace_seconds} s): a push running now may lose shards",
                   err=True)
    try:
        report = asyncio.run(run_gc(network, publisher, max_age=max_age, max_idle=max_idle,
                                    grace=grace, dry_run=dry_run, force=force,
                                    keyring=keyring))
    except RecordTableError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    click.echo(format_report(report))
    if network.private and keyring is None and report.closure and dry_run:
        click.echo(SEALED_NOTE)

"""``nixshard repair``: rebuild lost and corrupt shards, copy records to their windows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import click

from storage_network import Network, NetworkClient, Publisher
from storage_network.errors import RecordTableError
from storage_network.upkeep.audit_findings import AuditFindings, FindingsFileError, load_findings
from storage_network.upkeep.repair import DEFAULT_JOBS, repair_network
from storage_network.upkeep.repair_report import RepairReport

from .cli_options import network_or_exit, publisher_or_exit


async def _run_once(network: Network, publisher: Publisher, dry_run: bool, jobs: int,
                    show_progress: bool, findings: AuditFindings | None,
                    verify: bool) -> RepairReport:
    with contextlib.ExitStack() as stack:
        bars: list[Any] = []

        def on_start(total: int) -> None:
            if show_progress:
                bars.append(stack.enter_context(click.progressbar(
                    length=total, label="stripes checked", file=click.get_text_stream("stderr"))))

        def progress(count: int) -> None:
            for bar in bars:
                bar.update(count)

        async with NetworkClient(network) as net:
            return await repair_network(net, publisher, dry_run=dry_run, jobs=jobs,
                                        findings=findings, verify=verify,
                                        on_start=on_start, progress=progress)


def format_report(report: RepairReport, dry_run: bool) -> str:
    """A few lines for people: stripes checked, what was (or would be) written, problems."""
    planned_shards = sum(len(ids) for key, ids in report.planned.items() if key != "records")
    if dry_run:
        shards = f"shards: would write {planned_shards}"
        records = f"{len(report.planned.get('records', []))} copies planned"
    else:
        rate = report.bytes_written / max(report.seconds, 1e-9) / 1e6
        shards = (f"shards: wrote {report.shards_written} ({report.bytes_written} bytes, "
                  f"{rate:.1f} MB/s), {report.shards_healed} of them healed "
                  "(replacing corrupt or missing copies)")
        records = f"{report.records_copied} copies written"
    lines = [
        f"stripes: {report.stripes} checked, {report.healthy} healthy, "
        f"{report.degraded} degraded, {len(report.lost)} lost",
        shards,
        f"checked: {report.shards_verified} shards read back and verified, "
        f"{report.corrupt_found} found corrupt or missing, {report.bad_deleted} corrupt "
        "copies deleted",
        f"records: {report.records} checked ({report.tombstones} tombstones), {records}",
        f"time: {report.seconds:.2f} s",
    ]
    if dry_run:
        lines += [f"  {key}: {len(ids)} {'copies' if key == 'records' else 'shards'}"
                  for key, ids in sorted(report.planned.items())]
    if report.unplaceable:
        lines.append(f"unplaceable: {report.unplaceable} shards have no free node "
                     "(add nodes: a stripe keeps one shard a node)")
    lines += [f"unreachable: {node}: {why}" for node, why in sorted(report.unreachable.items())]
    lines += [f"lost: stripe {root}" for root in report.lost]
    lines += [f"failed: {why}" for why in report.failures]
    return "\n".join(lines)


@click.command("repair")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML), a signed network map or a bootstrap file.")
@click.option("--signing-key", required=True, type=click.Path(dir_okay=False),
              help="Secret key file (Nix key format) the nodes accept: a maintainer key "
                   "(docs/keys.md); the push key only on a network without `maintainers`.")
@click.option("--dry-run", is_flag=True, help="Plan only: list what would be written.")
@click.option("--jobs", type=click.IntRange(min=1), default=DEFAULT_JOBS, show_default=True,
              help="Windows of up to 16 stripes checked and rebuilt at once, at most.")
@click.option("--from-audit", "audit_file", type=click.Path(dir_okay=False), default=None,
              metavar="FILE",
              help="An audit report (`nixshard audit --json` or `--report FILE`): every "
                   "shard of the nodes it found corrupt or missing shards on is read back "
                   "and verified, and each one that does not verify is rebuilt.")
@click.option("--verify", is_flag=True,
              help="Read back and verify every shard of every node (a full scrub; reads "
                   "all the data once).")
@click.option("--watch", type=click.FloatRange(min=1.0), default=None, metavar="SECONDS",
              help="Repeat every SECONDS until interrupted.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: when stderr is a terminal].")
def repair_command(network_file: str, signing_key: str, dry_run: bool, jobs: int,
                   audit_file: str | None, verify: bool, watch: float | None, as_json: bool,
                   progress: bool | None) -> None:
    """Rebuild missing and corrupt shards from any k verified ones and store them on
    live nodes; copy each record's newest version to its window.

    Idempotent and safe to interrupt: run it again and it finishes the job.
    Exit status 0 when the network is whole afterwards, 1 when shards were
    lost, could not be placed or written.
    """
    network = network_or_exit(network_file)
    publisher = publisher_or_exit(network, signing_key)
    findings = None
    if audit_file is not None:
        try:
            findings = load_findings(Path(audit_file), [n.id for n in network.nodes])
        except FindingsFileError as exc:
            raise click.ClickException(str(exc)) from exc
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    show = click.get_text_stream("stderr").isatty() if progress is None else progress
    while True:
        try:
            report = asyncio.run(_run_once(network, publisher, dry_run, jobs,
                                           show and not as_json, findings, verify))
        except RecordTableError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(json.dumps(report.to_json(), indent=1) if as_json
                   else format_report(report, dry_run))
        if watch is None:
            break
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
            break
    if not report.complete:
        raise SystemExit(1)

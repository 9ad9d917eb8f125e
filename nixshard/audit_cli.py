"""``nixshard audit``: challenge every node on a sample of its shards, update node scores."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path

import click

from storage_network import Network, NetworkClient, NetworkFileError, load_network
from storage_network.nodes.scores import Scores, ScoresFileError, default_scores_path
from storage_network.upkeep.audit import (
    DEFAULT_DEADLINE,
    DEFAULT_SAMPLE,
    AuditReport,
    audit_network,
    update_scores,
)
from storage_network.upkeep.inventory import Inventory, take_inventory

COLUMNS = ("expected", "sampled", "held", "missing", "corrupt", "late", "unreachable")


class AuditNotRun(click.ClickException):
    """The audit could not run at all (exit status 2, so 1 keeps meaning "flagged")."""

    exit_code = 2


async def run_audit(network: Network, sample: int, deadline: float,
                    rng: random.Random) -> tuple[Inventory, AuditReport]:
    """Take the inventory and audit every node over a fresh network client."""
    async with NetworkClient(network, timeout=max(30.0, 3 * deadline)) as net:
        inventory = await take_inventory(net)
        report = await audit_network(net, inventory, sample=sample, deadline=deadline, rng=rng)
    return inventory, report


def format_report(report: AuditReport) -> str:
    """The report as a table and notes, for people."""
    width = max([len("node"), *(len(row.node_id) for row in report.nodes)])
    head = f"{'node':<{width}}  " + "  ".join(f"{c:>{len(c)}}" for c in COLUMNS)
    lines = [f"audit: {report.records} records, {report.stripes} stripes; up to "
             f"{report.sample} shards a node, deadline {report.deadline:g} s; "
             f"took {report.seconds:.2f} s", "",
             head + "  verdict      score"]
    for row in report.nodes:
        score = "-" if row.score is None else f"{row.score:.3f}"
        lines.append(f"{row.node_id:<{width}}  "
                     + "  ".join(f"{getattr(row, c):>{len(c)}}" for c in COLUMNS)
                     + f"  {row.verdict:<11}  {score:>5}")
    for row in report.flagged:
        lines += [f"{row.node_id}: {note}" for note in row.notes]
        if len(row.bad_shards) > len(row.notes):
            lines.append(f"{row.node_id}: {len(row.bad_shards)} sampled shards not held in all "
                         "(--json lists them)")
    flagged = report.flagged
    lines.append("")
    lines.append(f"{len(flagged)} of {len(report.nodes)} nodes flagged: "
                 + ", ".join(f"{r.node_id} ({r.verdict})" for r in flagged)
                 if flagged else f"all {len(report.nodes)} nodes ok")
    return "\n".join(lines)


@click.command("audit")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML).")
@click.option("--sample", type=click.IntRange(min=1), default=DEFAULT_SAMPLE,
              show_default=True,
              help="Shards challenged per node (all when it should hold fewer). The default "
                   "catches a node missing 5% of its shards with probability >= 99%.")
@click.option("--deadline", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_DEADLINE, show_default=True, metavar="SECONDS",
              help="Time a node has to answer one challenge request (up to 1000 shards); "
                   "valid proofs that come later count as late.")
@click.option("--scores", "scores_path", type=click.Path(dir_okay=False), default=None,
              help="Scores file to update [default: $XDG_STATE_HOME/nixshard/scores.json].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE",
              help="Also write the JSON report to FILE (with the corrupt and missing shard "
                   "ids per node) for `nixshard repair --from-audit FILE`.")
@click.option("--seed", type=int, default=None,
              help="Seed of the sample draw (reproducible samples; nonces stay random).")
def audit_command(network_file: str, sample: int, deadline: float, scores_path: str | None,
                  as_json: bool, report_path: str | None, seed: int | None) -> None:
    """Challenge every node to prove it holds a random sample of the shards it
    should hold, report per node, and update the node scores.

    Each sampled shard is held (valid proof in time), missing, corrupt (the
    proof fails), late (valid, after the deadline) or unreachable.

    The JSON report lists each node's corrupt and missing shard ids: hand it
    to `nixshard repair --from-audit FILE` to rebuild them.

    Exit status: 0 when every node is ok; 1 when any node was flagged
    (missing, corrupt, late or unreachable); 2 when the audit could not run
    (bad network or scores file, report file not writable).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        network = load_network(network_file)
    except NetworkFileError as exc:
        raise AuditNotRun(str(exc)) from exc
    path = Path(scores_path) if scores_path else default_scores_path()
    try:
        scores = Scores.load(path)
    except ScoresFileError as exc:
        raise AuditNotRun(str(exc)) from exc
    inventory, report = asyncio.run(run_audit(network, sample, deadline, random.Random(seed)))
    err = click.get_text_stream("stderr")
    for node_id, why in sorted(inventory.unreachable.items()):
        click.echo(f"warning: could not list the records of node {node_id}: {why}", file=err)
    for key, why in sorted(inventory.bad_records.items()):
        click.echo(f"warning: record {key} could not be read: {why}", file=err)
    update_scores(report, scores)
    try:
        scores.save(path)
    except OSError as exc:
        raise AuditNotRun(f"cannot write scores file {path}: {exc}") from exc
    doc = {**report.to_json(), "scores_file": str(path)}
    if report_path is not None:
        try:
            Path(report_path).write_text(json.dumps(doc, indent=1) + "\n")
        except OSError as exc:
            raise AuditNotRun(f"cannot write report file {report_path}: {exc}") from exc
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    else:
        click.echo(format_report(report))
        click.echo(f"scores: {path}")
    if report.flagged:
        raise SystemExit(1)

"""``nixshard audit``: challenge every node on a sample of its shards, update node scores."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from pathlib import Path

import click

from storage_network import Network, NetworkClient, NetworkFileError
from storage_network.errors import MapError
from storage_network.network_map import SignedMap
from storage_network.network_map.source import read_network
from storage_network.nodes.scores import Scores, ScoresFileError, default_scores_path
from storage_network.upkeep.audit import (
    DEFAULT_DEADLINE,
    DEFAULT_SAMPLE,
    AuditReport,
    audit_network,
    update_scores,
)
from storage_network.upkeep.record_scan import RecordScan

from .map_cli import edit_document, next_draft, write_draft

COLUMNS = ("expected", "sampled", "held", "missing", "corrupt", "late", "unreachable")


class AuditNotRun(click.ClickException):
    """The audit could not run at all (exit status 2, so 1 keeps meaning "flagged")."""

    exit_code = 2


async def run_audit(network: Network, sample: int, deadline: float,
                    rng: random.Random) -> tuple[dict[str, str], AuditReport]:
    """Audit every node over a fresh network client: the nodes whose records could not
    be listed (node id -> why) and the report."""
    async with NetworkClient(network, timeout=max(30.0, 3 * deadline)) as net:
        scan = RecordScan(net)
        report = await audit_network(net, sample=sample, deadline=deadline, rng=rng,
                                     scan=scan)
    return scan.unreachable, report


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
        if row.evidence:
            shown = sum(len(item["shards"]) for item in row.evidence)
            lines.append(f"{row.node_id}: evidence signed by the node's key: "
                         f"{len(row.evidence)} failed proof answer(s), {shown} shard(s) "
                         "(--json / --report keep the signed answers)")
    flagged = report.flagged
    lines.append("")
    lines.append(f"{len(flagged)} of {len(report.nodes)} nodes flagged: "
                 + ", ".join(f"{r.node_id} ({r.verdict})" for r in flagged)
                 if flagged else f"all {len(report.nodes)} nodes ok")
    return "\n".join(lines)


@click.command("audit")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML), a signed network map or a bootstrap file.")
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
@click.option("--propose-map", "draft_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="DRAFT",
              help="With a signed map or bootstrap file as --network: also write the "
                   "unsigned draft of the next epoch, in which every active node whose "
                   "verdict is corrupt or missing is draining (repair then moves its "
                   "shards); maintainers sign it with `nixshard map sign`.")
def audit_command(network_file: str, sample: int, deadline: float, scores_path: str | None,
                  as_json: bool, report_path: str | None, seed: int | None,
                  draft_path: Path | None) -> None:
    """Challenge every node to prove it holds a random sample of the shards it
    should hold, report per node, and update the node scores.

    Each sampled shard is held (valid proof in time), missing, corrupt (the
    proof fails), late (valid, after the deadline) or unreachable.

    The JSON report lists each node's corrupt and missing shard ids: hand it
    to `nixshard repair --from-audit FILE` to rebuild them.  For a node with a
    key (network map) the failed proof answers are signed by the node and
    kept in the report as evidence (`signed_evidence`); an answer not signed
    by its key counts as unreachable.

    Exit status: 0 when every node is ok; 1 when any node was flagged
    (missing, corrupt, late or unreachable); 2 when the audit could not run
    (bad network or scores file, report file not writable).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        network = read_network(network_file, os.environ)
    except (NetworkFileError, MapError) as exc:
        raise AuditNotRun(str(exc)) from exc
    if draft_path is not None and network.follow is None:
        raise AuditNotRun("--propose-map needs --network to be a signed network map or a "
                          "bootstrap file (a network file has no epochs)")
    path = Path(scores_path) if scores_path else default_scores_path()
    try:
        scores = Scores.load(path)
    except ScoresFileError as exc:
        raise AuditNotRun(str(exc)) from exc
    unlisted, report = asyncio.run(run_audit(network, sample, deadline, random.Random(seed)))
    err = click.get_text_stream("stderr")
    for node_id, why in sorted(unlisted.items()):
        click.echo(f"warning: could not list the records of node {node_id}: {why}", file=err)
    for key, why in sorted(report.bad_records.items()):
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
    if draft_path is not None:
        assert network.follow is not None
        propose_drains(network.follow.trusted, report, draft_path)
    if report.flagged:
        raise SystemExit(1)


DRAINED_VERDICTS = ("corrupt", "missing")
"""Verdicts for which ``--propose-map`` drains a node: its own answers (signed, for a
node with a key) show shards lost or bad; late and unreachable nodes may be back soon."""


def propose_drains(current: SignedMap, report: AuditReport, draft_path: Path) -> None:
    """Write the next epoch of ``current`` with every active node whose verdict is one of
    :data:`DRAINED_VERDICTS` draining (nothing is written when there is none).

    Raises:
        AuditNotRun: the draft cannot be made or written.
    """
    active = {n.id for n in current.document.nodes if n.state == "active"}
    failing = sorted(row.node_id for row in report.flagged
                     if row.verdict in DRAINED_VERDICTS and row.node_id in active)
    err = click.get_text_stream("stderr")
    if not failing:
        click.echo("no node to drain: no draft written", file=err)
        return
    try:
        doc = edit_document(next_draft(current), drain=failing).validate()
    except (MapError, click.ClickException) as exc:
        raise AuditNotRun(f"cannot draft epoch {current.epoch + 1}: {exc}") from exc
    try:
        write_draft(draft_path, doc)
    except click.ClickException as exc:
        raise AuditNotRun(str(exc)) from exc
    click.echo(f"draft of epoch {doc.epoch}: draining {', '.join(failing)}", file=err)

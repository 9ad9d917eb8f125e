"""``nixshard doctor``: check a setup end to end and say what is wrong, in words.

Runs the checks of :mod:`nixshard.doctor_checks`, :mod:`nixshard.doctor_nodes`
and :mod:`nixshard.doctor_nixconf` in order (network file, nodes'
reachability, clocks and ids, keys, signed writes, gateway, nix.conf),
prints one line per finding and then the problems again as a list.  Exit
status 0 when nothing is a problem (warnings and skipped checks allowed), 1
otherwise (an unreadable network file too: it is said in one line), 2 on a
usage error.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import click

from storage_network import Network

from .cli_options import network_or_exit
from .doctor_checks import (
    Finding,
    Level,
    check_cache_secret,
    check_network,
    check_signing_key,
    exit_status,
    merge_findings,
    skipped,
)
from .doctor_nixconf import check_gateway, check_nix_conf, nix_settings, probe_gateway
from .doctor_nodes import (
    check_clocks,
    check_free_space,
    check_node_ids,
    check_reachability,
    probe_nodes,
    probe_writes,
)
from .use_cli import gateway_url

_MARK = {Level.OK: "ok", Level.SKIPPED: "skipped", Level.WARNING: "WARNING",
         Level.PROBLEM: "PROBLEM"}


async def run_checks(network: Network, signing_key: str | None, cache_secret: str | None,
                     gateway: str | None, nix_conf: Path | None, timeout: float
                     ) -> list[Finding]:
    """Every check, in the order they are printed.

    Args:
        signing_key: the signing key file (None: ``$NIXSHARD_SIGNING_KEY``, or none).
        cache_secret: the keyring file (None: ``$NIXSHARD_CACHE_SECRET``, or none).
        gateway: the gateway's base URL, or None to skip the gateway check.
        nix_conf: the nix.conf to read (None: what ``nix show-config`` reports),
            checked when ``gateway`` or ``nix_conf`` is given.
        timeout: seconds each node or the gateway may take to answer.
    """
    findings = check_network(network)
    probes = await probe_nodes(network, timeout)
    findings += check_reachability(probes)
    findings += check_free_space(probes)
    findings += check_clocks(probes)
    findings += check_node_ids(probes)
    key_findings, publisher = check_signing_key(network, signing_key, os.environ)
    findings += key_findings
    findings += check_cache_secret(network, cache_secret, os.environ,
                                   publishing=publisher is not None)
    if publisher is not None:
        findings = merge_findings(findings,
                                  await probe_writes(network, probes, publisher, timeout))
    needs_credentials = False
    if gateway is not None:
        gw = await probe_gateway(gateway, timeout)
        findings += check_gateway(gw, network)
        needs_credentials = gw.cache_info_status == 401
    if gateway is not None or nix_conf is not None:
        settings = await asyncio.to_thread(nix_settings, nix_conf, os.environ)
        findings += check_nix_conf(settings, gateway, network, needs_credentials)
    else:
        findings.append(skipped("nix.conf", "nix.conf",
                                "give --gateway URL (and --nix-conf FILE) to check that Nix "
                                "uses the gateway and trusts its key"))
    return findings


def print_findings(findings: list[Finding], network_file: str, network: Network) -> None:
    """One line per finding, then the problems as a numbered list."""
    click.echo(f"nixshard doctor: {network_file} ({network.k}-of-{network.n}, "
               f"{len(network.nodes)} nodes{', private' if network.private else ''})")
    for f in findings:
        click.echo(f"  {_MARK[f.level]:<8} {f.check:<9} {f.subject}: {f.message}")
    problems = [f for f in findings if f.level is Level.PROBLEM]
    warnings = sum(f.level is Level.WARNING for f in findings)
    if not problems:
        click.echo(f"\nall is well ({warnings} warning{'s' if warnings != 1 else ''})")
        return
    click.echo(f"\n{len(problems)} problem{'s' if len(problems) != 1 else ''}"
               f" ({warnings} warning{'s' if warnings != 1 else ''}):")
    for i, f in enumerate(problems, 1):
        click.echo(f"  {i}. [{f.check}] {f.subject}: {f.message}")


@click.command("doctor")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML), a signed network map or a bootstrap file.")
@click.option("--signing-key", default=None, type=click.Path(dir_okay=False),
              help="The publisher's Nix secret key file [default: $NIXSHARD_SIGNING_KEY]; "
                   "checks it is a listed publisher and that every node accepts its writes.")
@click.option("--cache-secret", default=None, type=click.Path(dir_okay=False),
              help="A private network's keyring [default: $NIXSHARD_CACHE_SECRET].")
@click.option("--gateway", default=None, metavar="URL",
              help="A gateway (`nixshard serve`) Nix should use, e.g. http://gateway.lan:5000.")
@click.option("--nix-conf", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="The nix.conf to check [default: what `nix show-config` reports].")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds each node or the gateway may take to answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor_command(network_file: str, signing_key: str | None, cache_secret: str | None,
                   gateway: str | None, nix_conf: Path | None, timeout: float,
                   as_json: bool) -> None:
    """Check a nixshard setup end to end and say what is wrong.

    Checks the network file; that every node and bucket answers, that its clock
    is within 300 s of this machine's (nodes refuse writes dated further off) and
    that it runs under its id in the file; that the signing key is a listed
    publisher and every node accepts its writes; a private network's cache
    secret; the gateway; and that nix.conf uses the gateway and trusts its key.
    Exit status 0 when all is well, 1 with the list of problems.
    """
    network = network_or_exit(network_file)
    if gateway is not None:
        gateway = gateway_url(gateway, "--gateway")
    findings = asyncio.run(run_checks(network, signing_key, cache_secret, gateway, nix_conf,
                                      timeout))
    if as_json:
        click.echo(json.dumps({"status": "problems" if exit_status(findings) else "ok",
                               "findings": [f.as_dict() for f in findings]}, indent=1))
    else:
        print_findings(findings, network_file, network)
    raise SystemExit(exit_status(findings))

"""The node checks of ``nixshard doctor``: reachability, free space, clocks, node ids
and a signed write (what each one checks: :mod:`nixshard.doctor_checks`).
"""

from __future__ import annotations

import asyncio
import email.utils
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from storage_network import Network, NetworkClient, NodeError, Publisher
from storage_network.errors import NodeStatusError
from storage_network.wire.write_auth import MAX_SKEW_SECONDS

from .cli_options import is_http_node
from .doctor_checks import Finding, Level, ok, problem, skipped, warning
from .doctor_http import ANSWER_LIMIT, http_get, json_object

CLOCK_WARN_SECONDS = 30.0
"""A clock this far off is not kept by NTP (a warning; writes fail past 300 s)."""
LOW_FREE_BYTES = 1 << 30
"""A node with less free space than this is reported (a warning): 1 GiB."""


def format_seconds(seconds: float) -> str:
    """``seconds`` in words for messages: ``42 s``, ``12 min 5 s``, ``3 h 0 min``."""
    s = abs(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


# --- nodes: what /healthz says -------------------------------------------------------------


@dataclass
class NodeProbe:
    """What one node answered to the doctor's health request.

    Attributes:
        node_id: its id in the network file.
        url: its URL in the network file.
        kind: ``"node"`` (ours, over HTTP) or ``"bucket"`` (S3).
        error: why it could not be reached or answered badly; None when it answered.
        health: its ``/healthz`` JSON object (a bucket: what the bucket store reports).
        skew: seconds its clock is ahead of this machine's (negative: behind), from
            the ``Date`` header; None without one.
        skew_uncertainty: seconds the skew may be off (the header's one-second
            resolution plus half the round trip).
        seconds: how long the request took.
    """

    node_id: str
    url: str
    kind: str
    error: str | None = None
    health: dict[str, Any] | None = None
    skew: float | None = None
    skew_uncertainty: float = 0.0
    seconds: float = 0.0


def skew_from_date(date_header: str | None, sent: float, received: float
                   ) -> tuple[float | None, float]:
    """How far the clock behind an HTTP ``Date`` header is ahead of ours.

    Args:
        date_header: the answer's ``Date`` (RFC 9110 IMF-fixdate), or None.
        sent: our ``time.time()`` when the request was sent.
        received: our ``time.time()`` when the answer's headers came in.

    Returns:
        ``(skew seconds or None, uncertainty seconds)``; None when the header is
        absent or malformed.  The header is truncated to the second, so the
        node's time at answering lies in [date, date + 1): the skew is taken
        against the middle of that second and of our round trip.
    """
    if not date_header:
        return None, 0.0
    try:
        when = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None, 0.0
    if when.tzinfo is None:
        return None, 0.0
    middle = (sent + received) / 2
    return when.timestamp() + 0.5 - middle, 0.5 + (received - sent) / 2


async def _probe_http(session: aiohttp.ClientSession, node_id: str, url: str,
                      timeout: float) -> NodeProbe:
    probe = NodeProbe(node_id, url, "node")
    sent = time.time()
    answer = await http_get(session, url, "/healthz", timeout, ANSWER_LIMIT + 1)
    if isinstance(answer, str):
        probe.error = answer
        return probe
    probe.seconds = answer.received - sent
    probe.skew, probe.skew_uncertainty = skew_from_date(answer.date, sent, answer.received)
    if answer.status != 200:
        probe.error = (f"GET /healthz answered {answer.status}, not 200: is this a nixshard "
                       "node?")
        return probe
    if len(answer.body) > ANSWER_LIMIT:
        probe.error = (f"GET /healthz answered more than {ANSWER_LIMIT} bytes: answer too "
                       "large for a nixshard node's health")
        return probe
    doc = json_object(answer.body)
    if doc is None or doc.get("status") != "ok":
        probe.error = "GET /healthz did not answer a nixshard node's JSON {\"status\": \"ok\"}"
        return probe
    probe.health = doc
    return probe


async def _probe_bucket(net: NetworkClient, node_id: str, url: str) -> NodeProbe:
    probe = NodeProbe(node_id, url, "bucket")
    started = time.monotonic()
    try:
        probe.health = await net.nodes[node_id].health()
    except NodeError as exc:
        probe.error = str(exc)[:300]
    probe.seconds = time.monotonic() - started
    return probe


async def probe_nodes(network: Network, timeout: float) -> list[NodeProbe]:
    """Ask every node of ``network`` for its health at once, in the file's order.

    Our nodes get ``GET /healthz`` (read for its JSON and its ``Date`` header);
    buckets get a HeadBucket through their node store (credentials as every
    command resolves them).  Never raises: failures are in :attr:`NodeProbe.error`.

    Args:
        timeout: seconds each node may take.
    """
    http = [n for n in network.nodes if is_http_node(n.url)]
    others = [n for n in network.nodes if not is_http_node(n.url)]
    probes: dict[str, NodeProbe] = {}
    async with aiohttp.ClientSession() as session:
        coros: list[Any] = [_probe_http(session, n.id, n.url, timeout) for n in http]
        if others:
            async with NetworkClient(network, timeout=timeout) as net:
                coros += [_probe_bucket(net, n.id, n.url) for n in others]
                results = await asyncio.gather(*coros)
        else:
            results = await asyncio.gather(*coros)
    for probe in results:
        probes[probe.node_id] = probe
    return [probes[n.id] for n in network.nodes]


def check_reachability(probes: Sequence[NodeProbe]) -> list[Finding]:
    """Every node and bucket answers; says how many the network can lose still."""
    found = []
    for p in probes:
        what = "bucket" if p.kind == "bucket" else "node"
        if p.error is None:
            found.append(ok("reach", p.node_id, f"{what} {p.url} answers "
                                                f"({p.seconds * 1000:.0f} ms)"))
        else:
            found.append(problem(
                "reach", p.node_id,
                f"{what} {p.url} cannot be reached: {p.error}. Readers and writers go "
                "around it, but every stripe with a shard on it has one fewer to spare; "
                "check that the node runs, listens on that address and port, and that no "
                "firewall, NAT or proxy is in the way"))
    return found


def check_free_space(probes: Sequence[NodeProbe], low: int = LOW_FREE_BYTES) -> list[Finding]:
    """A node reporting less than ``low`` bytes free (warning: writes to it fail with 507
    when full and go to the next node)."""
    found = []
    for p in probes:
        free = (p.health or {}).get("free_bytes")
        if isinstance(free, int) and not isinstance(free, bool) and free < low:
            found.append(warning(
                "reach", p.node_id,
                f"has {free} bytes free on its data disk; a full node refuses shards (507) "
                "and pushes place them on the next node: give it more disk"))
    return found


def check_clocks(probes: Sequence[NodeProbe], max_skew: float = MAX_SKEW_SECONDS,
                 warn: float = CLOCK_WARN_SECONDS) -> list[Finding]:
    """Each answering node's clock against this machine's.

    A problem beyond ``max_skew`` seconds (the node refuses signed writes dated
    that far from its clock: pushes, repair and gc fail on it), a warning beyond
    ``warn`` (NTP is not keeping one of the clocks).  When every node is off by
    about the same amount, this machine's clock is the likely culprit and one more
    finding says so.
    """
    found = []
    measured = []
    for p in probes:
        if p.error is not None and p.skew is None:
            continue
        if p.kind == "bucket":
            found.append(skipped("clock", p.node_id,
                                 "a bucket's clock is not checked (S3 refuses requests signed "
                                 "more than 15 min off on its own: that shows as unreachable)"))
            continue
        if p.skew is None:
            found.append(warning("clock", p.node_id,
                                 "its answer carries no HTTP Date header, so its clock cannot "
                                 "be compared; a proxy in front of it may drop it"))
            continue
        measured.append(p)
        off = abs(p.skew)
        side = "ahead of" if p.skew > 0 else "behind"
        words = f"its clock is {format_seconds(p.skew)} {side} this machine's ({p.skew:+.0f} s)"
        if off - p.skew_uncertainty > max_skew:
            found.append(problem(
                "clock", p.node_id,
                f"{words}: a node refuses every signed write dated more than {max_skew:g} s "
                "from its own clock, so pushes, repair and gc from here fail on it. Run NTP "
                "(chrony, systemd-timesyncd) on the node and on every publisher"))
        elif off > warn:
            found.append(warning(
                "clock", p.node_id,
                f"{words}: NTP does not seem to keep these clocks; at {max_skew:g} s the node "
                "refuses writes"))
        else:
            found.append(ok("clock", p.node_id,
                            f"clock within {format_seconds(max(off, p.skew_uncertainty))} of "
                            "this machine's"))
    if len(measured) >= 2:
        skews = [p.skew for p in measured if p.skew is not None]
        same_side = all(s > 0 for s in skews) or all(s < 0 for s in skews)
        if same_side and min(abs(s) for s in skews) > warn and max(skews) - min(skews) <= warn:
            mean = sum(skews) / len(skews)
            level = Level.PROBLEM if abs(mean) > max_skew else Level.WARNING
            found.append(Finding(
                "clock", level, "this machine",
                f"every node's clock is about {format_seconds(mean)} "
                f"{'ahead of' if mean > 0 else 'behind'} this machine's: this machine's "
                "clock is the likely one to fix (is NTP running here?)"))
    return found


def check_node_ids(probes: Sequence[NodeProbe]) -> list[Finding]:
    """The id each node reports in ``/healthz`` (its ``--node-id``) against its id in the
    network file."""
    found = []
    for p in probes:
        if p.health is None or p.kind == "bucket":
            continue
        reported = p.health.get("node_id")
        if reported is None and "nodes_in_good_standing" in p.health:
            found.append(problem(
                "node id", p.node_id,
                f"{p.url} answers like a gateway (`nixshard serve`), not a storage node: "
                "the network file must list the nodes' URLs"))
        elif not isinstance(reported, str):
            found.append(warning(
                "node id", p.node_id,
                "its /healthz does not report its node id (an older nixshard node?), so it "
                "cannot be compared with the network file; with --signing-key the signed "
                "write probe checks it"))
        elif reported != p.node_id:
            found.append(problem(
                "node id", p.node_id,
                f"the node at {p.url} runs as --node-id {reported!r}, but the network file "
                f"lists it as {p.node_id!r}: writes are signed for {p.node_id!r} and it "
                f"refuses them all. Restart it with --node-id {p.node_id} (the file's id; "
                "placement ranks ids, so change the node, not the file)"))
        else:
            found.append(ok("node id", p.node_id, "reports the id the network file gives it"))
    return found

# --- signed writes ---------------------------------------------------------------------


def _unheld_shard_id() -> str:
    """A well-formed shard id of a random stripe root: no node holds it."""
    return f"{secrets.token_hex(32)}.0"


def classify_write_refusal(node_id: str, status: int, text: str) -> Finding:
    """A node's refusal of the doctor's signed probe, in words.

    The node's own message names the cause (``storage_network.wire.write_auth``):
    a date too far from its clock, a write bound to another node id, a key it
    does not accept.
    """
    if "away from now" in text:
        return problem("clock", node_id,
                       f"refuses signed writes from this machine: its clock and this "
                       f"machine's differ by more than {MAX_SKEW_SECONDS} s ({text.strip()}). "
                       "Run NTP on both")
    if "is signed for node" in text:
        return problem("node id", node_id,
                       f"refuses writes signed for {node_id!r}: it runs under another "
                       f"--node-id ({text.strip()}); restart it with --node-id {node_id}")
    if "not accepted here" in text:
        return problem("writes", node_id,
                       "does not accept the signing key: it reads its publishers from "
                       "--network FILE (at start) and --accept-publisher; restart it with the "
                       f"current network file ({text.strip()})")
    return problem("writes", node_id, f"refused a signed write: {status} {text.strip()}")


async def probe_writes(network: Network, probes: Sequence[NodeProbe], publisher: Publisher,
                       timeout: float) -> list[Finding]:
    """One signed, harmless write per answering node of ours: ``POST /shards/has`` with
    ``"touch": true`` for a shard id no node holds (it sets the mtime of nothing).

    Buckets check no signatures (their credentials are the write permission): skipped.
    """
    targets = [p for p in probes if p.kind == "node" and p.error is None]
    if not targets:
        return []

    async with NetworkClient(network, timeout=timeout) as net:
        async def one(probe: NodeProbe) -> Finding:
            try:
                await net.nodes[probe.node_id].has([_unheld_shard_id()], touch=publisher)
            except NodeStatusError as exc:
                text = str(exc).split(f"-> {exc.status}", 1)[-1]
                return classify_write_refusal(probe.node_id, exc.status, text)
            except NodeError as exc:
                return problem("writes", probe.node_id, f"signed write probe failed: {exc}")
            return ok("writes", probe.node_id,
                      f"accepts writes signed by {publisher.name} for this id, now")

        return list(await asyncio.gather(*(one(p) for p in targets)))

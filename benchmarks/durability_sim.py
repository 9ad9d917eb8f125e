"""A year of a 1,000-node network: data lost and repair traffic, per placement scheme.

Usage (from the repository root)::

    python3 benchmarks/durability_sim.py [--seed 1] [--stripes 200000]
        [--rendezvous-stripes 25000] [--afr 0.04] [--operator-failures 12] ...

(``--help`` lists every rate.)  A seeded discrete-event simulation, not a
test: nothing is asserted, the same seed prints the same tables.  Time is in
hours, sizes in bytes unless a name says otherwise.

The network: ``--nodes`` nodes run by ``--operators`` operators (10 each by
default), ``--zones`` zones per operator, every ``--heavy-every``-th node of
weight 2 (twice the capacity), the others weight 1.  A weight-1 node stores
``--node-tb`` TB of shards.  Stripes are k-of-n (``--k``, ``--m``; 4-of-6)
with ``--shard-kib`` KiB shards; the simulated stripes are a sample of the
network's stripes (each stands for many), so every figure is given per TB
stored (TB of shards on the nodes) and the sample size only sets how fine the
figures are (one sampled stripe = 1 TB / (stripes x n) of shards).

Placement is the real code (:mod:`storage_network.nodes.placement`, through
:func:`placement_ranking` only): the initial homes of each stripe are the
first n places of its chunk's ranking and repair writes each missing shard
where :func:`storage_network.upkeep.repair_targets.plan_stripe` (what
``nixshard repair`` calls) puts it.  Rendezvous ranks every node per chunk
(about 1.7 ms at 1,100 nodes), so it is run on ``--rendezvous-stripes``
stripes; each stripe's ranking is computed once over every node that will
ever exist and restricted to the nodes present, which is what rendezvous
hashing gives for that node set (checked on a few stripes at start).

Events (the same timeline for every scheme; rates per node unless stated):

- permanent node failure, ``--afr`` a year (the disk and its shards are lost);
- transient outage, ``--outages-per-month``, lasting Exp(``--outage-hours``):
  shards intact but unreachable;
- churn: a node leaves with probability ``--leave-rate`` a year (drains: its
  shards are copied to the placement's target, ``--repair-mbps`` of its
  link, then it is removed), and ``--join-rate`` x nodes new nodes a year join
  a surviving operator (weights and zones drawn as above);
- ``--operator-failures`` a year, one per equal slice of the year at a random
  moment in it: every node of one surviving operator is lost at once.

Repair: a loss (or an outage still going on) is detected ``--detect-hours``
after it happens (the audit interval); the failed nodes are then removed from
the network file and a repair job queued.  Jobs run one after the other at
the network's repair rate, ``--repair-mbps`` per present node (a rebuilt
stripe's traffic is spread over all nodes); a job lasts its estimated traffic,
(k + 1) shards per stripe, over that rate, and repairs its stripes in random
order, in batches of about an hour.
Repairing a stripe reads k shards from answering holders and writes every
missing shard (one a node that does not answer holds counts as missing, as
in ``nixshard repair``): traffic = (k + shards written) x shard size.  A
stripe with fewer than k answering holders is retried ``--detect-hours``
later (the next repair run).  A rebuilt shard replaces the copy on a node
that was only unreachable (that copy is not counted again).  Draining nodes
and nodes not answering take no new shards.

Output: the rates, then per scenario a markdown table with one row per
scheme.  numpy is used for the bookkeeping (the ``groups`` scheme needs it
anyway).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage_network import config  # noqa: E402
from storage_network.config import Network, NodeInfo  # noqa: E402
from storage_network.nodes import placement  # noqa: E402
from storage_network.upkeep.record_table import Stripe  # noqa: E402
from storage_network.upkeep.repair_targets import StripePlan, plan_stripe  # noqa: E402
from storage_network.wire.manifest import ChunkRef  # noqa: E402

HOURS_PER_YEAR = 8760.0
TB = 1e12
RANK_PREFIX = 32
"""Places of a stripe's ranking handed to ``plan_stripe`` (the whole ranking when
no free node is among them)."""

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Rates:
    """Every parameter of a run (see the module docstring for the model); each is a
    ``--flag`` described in :data:`HELP`."""

    seed: int = 1
    days: float = 365.0
    nodes: int = 1000
    operators: int = 100
    zones: int = 3
    heavy_every: int = 5
    k: int = 4
    m: int = 2
    stripes: int = 200_000
    rendezvous_stripes: int = 25_000
    shard_kib: int = 64
    node_tb: float = 4.0
    afr: float = 0.04
    outages_per_month: float = 1.0
    outage_hours: float = 6.0
    leave_rate: float = 0.10
    join_rate: float = 0.10
    operator_failures: int = 12
    detect_hours: float = 24.0
    repair_mbps: float = 50.0

    @property
    def n(self) -> int:
        """Shards per stripe."""
        return self.k + self.m

    @property
    def hours(self) -> float:
        """Simulated time, hours."""
        return self.days * 24.0

    def stored_bytes(self) -> float:
        """Bytes of shards the network stores at hour 0 (``node_tb`` per unit of weight)."""
        heavy = self.nodes // self.heavy_every
        return self.node_tb * TB * (self.nodes + heavy)

    def stands_for(self, stripes: int) -> float:
        """Stripes of the network one of ``stripes`` simulated stripes stands for."""
        return self.stored_bytes() / (stripes * self.n * self.shard_kib * 1024)

    def lines(self) -> list[str]:
        """The rates in words, for the top of the report."""
        return [
            f"- seed {self.seed}; {self.days:g} days; {self.nodes} nodes of {self.operators} "
            f"operators, {self.zones} zones each, every {self.heavy_every}th node weight 2",
            f"- {self.k}-of-{self.n} stripes, {self.shard_kib} KiB shards; a weight-1 node "
            f"stores {self.node_tb:g} TB of shards ({self.stored_bytes() / 1e15:.1f} PB in "
            f"all: a simulated stripe stands for {self.stands_for(self.stripes):,.0f} stripes, "
            f"under rendezvous for {self.stands_for(self.rendezvous_stripes):,.0f})",
            f"- permanent node failures {self.afr:.0%}/year per node (AFR); transient "
            f"outages {self.outages_per_month:g}/month per node, mean {self.outage_hours:g} h",
            f"- churn: {self.leave_rate:.0%}/year of nodes leave (drained first), "
            f"{self.join_rate:.0%}/year x {self.nodes} nodes join",
            f"- {self.operator_failures} whole-operator failures a year (one per "
            f"{self.days / max(1, self.operator_failures):.0f} days, at a random moment)",
            f"- detection {self.detect_hours:g} h after a loss (audit interval); repair and "
            f"drain bandwidth {self.repair_mbps:g} Mbit/s per node",
        ]


def placement_ranking(network: Network, chunk_id: bytes) -> Sequence[NodeInfo]:
    """The ranking of ``chunk_id`` under ``network.placement`` (best first): the one
    place this script calls the placement code.

    Uses ``placement.chunk_ranking`` when the module has it, else rendezvous
    ``placement.ranking`` (the API before placement schemes existed).

    Raises:
        SystemExit: the network asks for a scheme this placement module lacks.
    """
    chunk_ranking = getattr(placement, "chunk_ranking", None)
    if chunk_ranking is not None:
        ranked: Sequence[NodeInfo] = chunk_ranking(network, chunk_id)
        return ranked
    if network.placement != "rendezvous":
        raise SystemExit(f"placement {network.placement!r} is not in this placement module")
    return placement.ranking(network.nodes, chunk_id)


def available_schemes() -> list[str]:
    """The placement schemes the network file and the placement module both know."""
    known = getattr(config, "PLACEMENTS", ("rendezvous",))
    if not hasattr(placement, "chunk_ranking"):
        return ["rendezvous"]
    return [s for s in ("rendezvous", "groups") if s in known]


# ---- the timeline -------------------------------------------------------------------

TIMELINE_KINDS = frozenset({"fail", "leave", "join", "down", "operator"})
"""Events drawn in advance; the simulation adds ``detect``, ``outage``, ``batch``,
``retry`` and ``drained``."""


@dataclass(frozen=True, order=True)
class Event:
    """One event at ``hour`` (``seq`` orders events of one hour).

    Attributes:
        kind: what happens (``on_<kind>`` of :class:`YearSim` handles it).
        who: the node (operator for ``operator``, stripe for ``retry``), or -1.
        until: ``down``: the hour the outage ends.
        rows: ``detect``, ``batch``: the stripes concerned.
        victims: ``detect``: the nodes lost.
        cause: ``detect``, ``batch``, ``retry``: ``failure`` or ``outage``.
    """

    hour: float
    seq: int
    kind: str = field(compare=False)
    who: int = field(compare=False, default=-1)
    until: float = field(compare=False, default=0.0)
    rows: IntArray | None = field(compare=False, default=None)
    victims: tuple[int, ...] = field(compare=False, default=())
    cause: str = field(compare=False, default="")


@dataclass
class Timeline:
    """Every node that ever exists (index = node number) and the year's events.

    ``events``: sorted by hour; kinds :data:`TIMELINE_KINDS`.
    ``initial``: how many of ``nodes`` exist at hour 0 (the first ones).
    """

    nodes: list[NodeInfo]
    operator_of: IntArray
    initial: int
    events: list[Event]


def _node(number: int, name: str, operator: int, zone: int, heavy: bool) -> NodeInfo:
    """One node of the simulated network (its URL is never contacted)."""
    return NodeInfo(id=name, url=f"http://{name}.sim.invalid:9000", operator=f"op-{operator:03d}",
                    zone=f"z{zone}", weight=2.0 if heavy else 1.0)


def _rate(probability_per_year: float) -> float:
    """The per-hour rate of an event that happens within a year with that probability."""
    return -math.log1p(-probability_per_year) / HOURS_PER_YEAR if probability_per_year else 0.0


def make_timeline(rates: Rates) -> Timeline:
    """The nodes and events of one simulated year, from ``rates.seed``."""
    rng = np.random.default_rng([rates.seed, 1])
    per_op = rates.nodes // rates.operators
    nodes = [_node(i, f"n{i:04d}", i // per_op, (i % per_op) % rates.zones,
                   i % rates.heavy_every == rates.heavy_every - 1) for i in range(rates.nodes)]
    ops = [i // per_op for i in range(rates.nodes)]
    t_end = rates.hours
    events: list[tuple[float, str, int, float]] = []
    count = round(rates.operator_failures * rates.days / 365.0)
    failed_at: dict[int, float] = {}
    alive_ops = list(range(rates.operators))
    for j in range(count):
        hour = (j + rng.random()) / count * t_end
        op = alive_ops.pop(int(rng.integers(len(alive_ops))))
        failed_at[op] = hour
        events.append((hour, "operator", op, 0.0))
    joins = rng.poisson(rates.join_rate * rates.nodes * rates.days / 365.0)
    starts = [0.0] * rates.nodes
    for hour in np.sort(rng.random(joins) * t_end).tolist():
        candidates = [o for o in range(rates.operators) if failed_at.get(o, math.inf) > hour]
        op = candidates[int(rng.integers(len(candidates)))]
        i = len(nodes)
        nodes.append(_node(i, f"j{i:04d}", op, int(rng.integers(rates.zones)),
                           bool(rng.random() < 1 / rates.heavy_every)))
        ops.append(op)
        starts.append(hour)
        events.append((hour, "join", i, 0.0))
    fail_rate, leave_rate = _rate(rates.afr), _rate(rates.leave_rate)
    outage_rate = rates.outages_per_month * 12 / HOURS_PER_YEAR
    for i, t0 in enumerate(starts):
        for kind, rate in (("fail", fail_rate), ("leave", leave_rate)):
            if rate:
                hour = t0 + rng.exponential(1 / rate)
                if hour < t_end:
                    events.append((hour, kind, i, 0.0))
        for _ in range(rng.poisson(outage_rate * (t_end - t0))):
            hour = t0 + rng.random() * (t_end - t0)
            events.append((hour, "down", i, hour + rng.exponential(rates.outage_hours)))
    events.sort()
    return Timeline(nodes, np.array(ops, dtype=np.int64), rates.nodes,
                    [Event(hour, seq, kind, who, until)
                     for seq, (hour, kind, who, until) in enumerate(events)])


# ---- initial placement --------------------------------------------------------------

@dataclass
class Placed:
    """One scheme's sampled stripes at hour 0.

    ``homes``: (stripes, n) node numbers, shard i's home in column i.
    ``top``: rendezvous only, (stripes, RANK_PREFIX + extra) node numbers: each
    stripe's ranking over every node that ever exists, best first.
    """

    scheme: str
    chunk_ids: list[bytes]
    homes: IntArray
    top: IntArray | None


def network_of(nodes: Sequence[NodeInfo], rates: Rates, scheme: str) -> Network:
    """The network file of ``nodes`` under ``scheme`` (no publishers: none is needed)."""
    return Network(nodes=tuple(nodes), k=rates.k, m=rates.m, placement=scheme)


def place(scheme: str, timeline: Timeline, rates: Rates, stripes: int) -> Placed:
    """The homes of ``stripes`` random chunk ids under ``scheme``, by the real placement."""
    rng = np.random.default_rng([rates.seed, 2])
    chunk_ids = [rng.bytes(32) for _ in range(stripes)]
    number = {node.id: i for i, node in enumerate(timeline.nodes)}
    initial = network_of(timeline.nodes[:timeline.initial], rates, scheme).validate()
    homes = np.empty((stripes, rates.n), dtype=np.int64)
    if scheme != "rendezvous":
        for s, cid in enumerate(chunk_ids):
            homes[s] = [number[node.id] for node in placement_ranking(initial, cid)[:rates.n]]
        return Placed(scheme, chunk_ids, homes, None)
    everyone = network_of(timeline.nodes, rates, scheme)
    width = RANK_PREFIX + len(timeline.nodes) - timeline.initial + 8
    top = np.empty((stripes, width), dtype=np.int64)
    for s, cid in enumerate(chunk_ids):
        top[s] = [number[node.id] for node in placement_ranking(everyone, cid)[:width]]
    first = top < timeline.initial
    for s in range(stripes):
        homes[s] = top[s][first[s]][:rates.n]
    _check_restriction(initial, top, chunk_ids, number, timeline.initial)
    return Placed(scheme, chunk_ids, homes, top)


def _check_restriction(network: Network, top: IntArray, chunk_ids: list[bytes],
                       number: dict[str, int], initial: int) -> None:
    """Check on a few stripes that restricting the all-nodes rendezvous ranking to the
    initial nodes gives the initial network's ranking (the shortcut :func:`place` takes)."""
    for s in range(min(5, len(chunk_ids))):
        real = [number[node.id] for node in placement_ranking(network, chunk_ids[s])[:8]]
        restricted = [int(u) for u in top[s] if u < initial][:8]
        if real != restricted:
            raise SystemExit(f"rendezvous restriction differs from the ranking at stripe {s}")


# ---- the simulation -----------------------------------------------------------------

@dataclass
class Outcome:
    """What one scheme's year did (shard counts are of sampled shards)."""

    scheme: str
    stripes: int
    lost: int = 0
    fewest_surviving: int = 0
    fewest_spare: dict[str, int] = field(default_factory=dict)
    repair_shards: int = 0
    outage_repair_shards: int = 0
    moved_shards: int = 0
    deferred: int = 0
    longest_wait: float = 0.0
    unplaceable: int = 0
    lost_after_operator: list[int] = field(default_factory=list)
    exposed_start: tuple[int, int] = (0, 0)
    exposed_end: tuple[int, int] = (0, 0)
    seconds: float = 0.0


def operator_exposure(holders: IntArray, live: npt.NDArray[np.bool_], operator_of: IntArray,
                      m: int) -> tuple[int, int]:
    """(stripes some single operator's loss would lose, the most one operator's loss
    would lose), counting only the ``live`` (True) shards of ``holders`` (stripes, n)."""
    ops = np.where(live, operator_of[holders], -1 - np.arange(holders.shape[1]))
    ops = np.sort(ops, axis=1)
    run = np.ones(ops.shape, dtype=np.int64)
    for col in range(1, ops.shape[1]):
        same = ops[:, col] == ops[:, col - 1]
        run[:, col] = np.where(same, run[:, col - 1] + 1, 1)
    best = run.argmax(axis=1)
    exposed = run[np.arange(len(run)), best] > m
    if not exposed.any():
        return 0, 0
    worst_op = ops[np.arange(len(run)), best][exposed]
    return int(exposed.sum()), int(np.bincount(worst_op).max())


class YearSim:
    """One scheme's year over one timeline (see the module docstring).

    Args:
        placed: the stripes' homes at hour 0.
        repair: False: no detection, no repair, no drain (stripes only lose shards).
        kinds: the timeline's event kinds to play (the others are skipped).
    """

    def __init__(self, placed: Placed, timeline: Timeline, rates: Rates, repair: bool,
                 kinds: frozenset[str]) -> None:
        self.rates, self.timeline, self.placed, self.repair = rates, timeline, placed, repair
        self.kinds = kinds
        count = len(timeline.nodes)
        self.holders = placed.homes.copy()
        self.present = np.zeros(count, dtype=bool)
        self.present[:timeline.initial] = True
        self.dead = np.zeros(count, dtype=bool)
        self.draining = np.zeros(count, dtype=bool)
        self.down_until = np.zeros(count)
        self.lost = np.zeros(len(self.holders), dtype=bool)
        self.fewest = np.full(len(self.holders), rates.n, dtype=np.int64)
        self.number = {node.id: i for i, node in enumerate(timeline.nodes)}
        self.stripe = Stripe(ChunkRef(b"", b"", 0, 0), "isa_l_rs_cauchy", rates.k, rates.m)
        self.heap = list(timeline.events)
        heapq.heapify(self.heap)
        self.seq = len(self.heap)
        self.busy_until = 0.0
        self.rng = np.random.default_rng([rates.seed, 3])
        self._network: Network | None = None
        self.out = Outcome(placed.scheme, len(self.holders))
        self.shard_bytes = rates.stored_bytes() / self.holders.size  # bytes a sampled shard is
        self.node_rate = rates.repair_mbps * 1e6 / 8 * 3600  # bytes per hour per node

    # -- bookkeeping

    def push(self, hour: float, kind: str, **fields: Any) -> None:
        """Schedule a simulation event (detections, repair batches, drains)."""
        self.seq += 1
        heapq.heappush(self.heap, Event(hour, self.seq, kind, **fields))

    def network(self) -> Network:
        """The network file now: present nodes, draining ones marked so."""
        if self._network is None:
            nodes = [dataclasses.replace(self.timeline.nodes[i], state="draining")
                     if self.draining[i] else self.timeline.nodes[i]
                     for i in np.flatnonzero(self.present).tolist()]
            self._network = network_of(nodes, self.rates, self.placed.scheme)
        return self._network

    def membership_changed(self) -> None:
        """Forget the network file (rebuilt on next use)."""
        self._network = None

    def rows_on(self, nodes: Sequence[int]) -> IntArray:
        """Stripes not lost that have a shard on any of ``nodes``."""
        hit = np.isin(self.holders, nodes).any(axis=1) & ~self.lost
        return np.flatnonzero(hit)

    # -- events

    def run(self) -> Outcome:
        """Play the year; returns the outcome."""
        began = time.perf_counter()
        alive = ~self.dead[self.holders]
        self.out.exposed_start = operator_exposure(self.holders, alive, self.timeline.operator_of,
                                                   self.rates.m)
        while self.heap and self.heap[0].hour < self.rates.hours:
            event = heapq.heappop(self.heap)
            if event.kind in self.kinds or event.kind not in TIMELINE_KINDS:
                getattr(self, "on_" + event.kind)(event)
        self.finish()
        self.out.seconds = time.perf_counter() - began
        return self.out

    def on_fail(self, event: Event) -> None:
        """A node's disk is lost."""
        if self.present[event.who] and not self.dead[event.who]:
            self.lose([event.who], event.hour)

    def on_operator(self, event: Event) -> None:
        """Every node of operator ``event.who`` is lost."""
        victims = self.present & ~self.dead & (self.timeline.operator_of == event.who)
        self.lose(np.flatnonzero(victims).tolist(), event.hour)
        self.out.lost_after_operator.append(int(self.lost.sum()))

    def lose(self, victims: list[int], hour: float) -> None:
        """Mark ``victims`` dead, update the stripes they held, schedule detection."""
        if not victims:
            return
        rows = self.rows_on(victims)
        self.dead[victims] = True
        surviving = (~self.dead[self.holders[rows]]).sum(axis=1)
        self.fewest[rows] = np.minimum(self.fewest[rows], surviving)
        self.lost[rows[surviving < self.rates.k]] = True
        if self.repair:
            self.push(hour + self.rates.detect_hours, "detect", rows=rows,
                      victims=tuple(victims), cause="failure")

    def on_detect(self, event: Event) -> None:
        """The audit noticed a loss: remove the nodes from the file, queue the repair."""
        self.present[list(event.victims)] = False
        self.membership_changed()
        assert event.rows is not None
        self.enqueue(event.rows, event.hour, event.cause)

    def on_down(self, event: Event) -> None:
        """A node stops answering until ``event.until``; checked at the next audit."""
        node, hour = event.who, event.hour
        if self.present[node] and not self.dead[node]:
            self.down_until[node] = max(self.down_until[node], event.until)
            if self.repair and event.until > hour + self.rates.detect_hours:
                self.push(hour + self.rates.detect_hours, "outage", who=node)

    def on_outage(self, event: Event) -> None:
        """An audit found a node still unreachable: its stripes go to repair."""
        node = event.who
        if self.present[node] and not self.dead[node] and self.down_until[node] > event.hour:
            self.enqueue(self.rows_on([node]), event.hour, "outage")

    def on_join(self, event: Event) -> None:
        """A new node enters the network file."""
        self.present[event.who] = True
        self.membership_changed()

    def on_leave(self, event: Event) -> None:
        """A node starts draining; it is removed once its shards are copied away
        (its stored bytes over its link's ``--repair-mbps``)."""
        node = event.who
        if not self.repair or not self.present[node] or self.dead[node] or self.draining[node]:
            return
        self.draining[node] = True
        self.membership_changed()
        held = int((self.holders[~self.lost] == node).sum())
        self.push(event.hour + held * self.shard_bytes / self.node_rate, "drained", who=node)

    def on_drained(self, event: Event) -> None:
        """Copy each shard of the draining node to its target; remove the node."""
        node = event.who
        if self.dead[node]:
            return
        skip = self.unreachable(event.hour) | {self.timeline.nodes[node].id}
        for s in self.rows_on([node]).tolist():
            index = int(np.flatnonzero(self.holders[s] == node)[0])
            held = {i: [self.timeline.nodes[u]] for i, u in enumerate(self.holders[s].tolist())
                    if i != index and not self.dead[u]}
            target = self.plan(s, held, skip).targets.get(index)
            if target is None:
                self.out.unplaceable += 1
                continue
            self.holders[s, index] = self.number[target.id]
            self.out.moved_shards += 1
        self.present[node] = False
        self.draining[node] = False
        self.membership_changed()

    # -- repair

    def enqueue(self, rows: IntArray, hour: float, cause: str) -> None:
        """Queue a repair job for ``rows``: it starts when the previous job ends and
        lasts its estimated traffic ((k + 1) shards a stripe) over the network's
        repair rate; its stripes, shuffled, are repaired in batches of about an hour."""
        rows = rows[~self.lost[rows]]
        if not len(rows):
            return
        traffic = len(rows) * (self.rates.k + 1) * self.shard_bytes
        rate = self.node_rate * int((self.present & ~self.dead).sum())
        start = max(hour, self.busy_until)
        duration = traffic / rate
        self.busy_until = start + duration
        self.out.longest_wait = max(self.out.longest_wait, self.busy_until - hour)
        order = self.rng.permutation(rows)
        batches = max(1, min(200, math.ceil(duration)))
        for j, part in enumerate(np.array_split(order, batches)):
            self.push(start + (j + 1) / batches * duration, "batch", rows=part, cause=cause)

    def on_batch(self, event: Event) -> None:
        """Repair each stripe of one batch."""
        assert event.rows is not None
        skip = self.unreachable(event.hour)
        for s in event.rows.tolist():
            self.repair_stripe(s, event.hour, skip, event.cause)

    def on_retry(self, event: Event) -> None:
        """The next repair run tries a stripe that had too few answering holders."""
        self.repair_stripe(event.who, event.hour, self.unreachable(event.hour), event.cause)

    def unreachable(self, hour: float) -> set[str]:
        """Ids of the nodes in the file that take no new shard now: not answering
        (down, or dead and not yet removed) or draining."""
        off = self.present & (self.dead | (self.down_until > hour) | self.draining)
        return {self.timeline.nodes[i].id for i in np.flatnonzero(off).tolist()}

    def repair_stripe(self, s: int, hour: float, skip: set[str], cause: str) -> None:
        """Rebuild the missing shards of stripe ``s`` (see the module docstring)."""
        if self.lost[s]:
            return
        row = self.holders[s].tolist()
        answering = {i: [self.timeline.nodes[u]] for i, u in enumerate(row)
                     if not self.dead[u] and self.down_until[u] <= hour}
        if len(answering) == len(row):
            return
        if len(answering) < self.rates.k:
            self.out.deferred += 1
            self.push(hour + self.rates.detect_hours, "retry", who=s, cause=cause)
            return
        plan = self.plan(s, answering, skip)
        for index, node in plan.targets.items():
            self.holders[s, index] = self.number[node.id]
        self.out.unplaceable += len(plan.unplaceable)
        traffic = self.rates.k + len(plan.targets)
        self.out.repair_shards += traffic
        if cause == "outage":
            self.out.outage_repair_shards += traffic

    def plan(self, s: int, held: dict[int, list[NodeInfo]], skip: set[str]) -> StripePlan:
        """``plan_stripe`` on the first :data:`RANK_PREFIX` places of stripe ``s``'s
        ranking; on the whole ranking when that plan might differ from the whole
        ranking's (a shard unplaced, or put on another index's home because no
        place past n was free)."""
        rank = self.ranking(s, whole=False)
        plan = plan_stripe(self.stripe, held, rank, skip)
        n = self.rates.n
        spares = {node.id for node in rank[n:]}
        if plan.unplaceable or any(node.id not in spares and node.id != rank[i].id
                                   for i, node in plan.targets.items()):
            plan = plan_stripe(self.stripe, held, self.ranking(s, whole=True), skip)
        return plan

    def ranking(self, s: int, whole: bool) -> Sequence[NodeInfo]:
        """Stripe ``s``'s ranking in the network file now (its first places unless
        ``whole``)."""
        top = self.placed.top
        if top is not None and not whole:
            nodes = self.timeline.nodes
            return [nodes[u] for u in top[s][self.present[top[s]]][:RANK_PREFIX].tolist()]
        ranked = placement_ranking(self.network(), self.placed.chunk_ids[s])
        return list(ranked) if whole else ranked[:RANK_PREFIX]

    def check_shortcut(self) -> None:
        """Check on a few stripes that the restricted all-nodes ranking (rendezvous) is
        the ranking of the network file as it is now, after the year's joins and
        removals.

        Raises:
            SystemExit: they differ (the shortcut would be wrong).
        """
        if self.placed.top is None:
            return
        for s in range(min(5, len(self.holders))):
            real = placement_ranking(self.network(), self.placed.chunk_ids[s])[:RANK_PREFIX]
            if [n.id for n in real] != [n.id for n in self.ranking(s, whole=False)]:
                raise SystemExit(f"rendezvous restriction differs from the ranking at stripe {s}")

    def finish(self) -> None:
        """Fill in the outcome's end-of-year figures."""
        self.check_shortcut()
        out, k = self.out, self.rates.k
        out.lost = int(self.lost.sum())
        out.fewest_surviving = int(self.fewest.min())
        spare = self.fewest - k
        out.fewest_spare = {"2+": int((spare >= 2).sum()), "1": int((spare == 1).sum()),
                            "0": int((spare == 0).sum()), "lost": int((spare < 0).sum())}
        keep = ~self.lost
        live = ~self.dead[self.holders[keep]]
        out.exposed_end = operator_exposure(self.holders[keep], live, self.timeline.operator_of,
                                            self.rates.m)


# ---- the report ---------------------------------------------------------------------

def per_tb(shards: int, outcome: Outcome, rates: Rates) -> float:
    """TB a count of sampled shards stands for, per TB of shards stored, per year."""
    return shards / (outcome.stripes * rates.n) * 365.0 / rates.days


def repair_table(outcomes: list[Outcome], rates: Rates) -> list[str]:
    """The year with repair, one row per scheme (shard and stripe counts are of the
    sample; TB figures are per TB of shards stored)."""
    rows = ["| scheme | stripes | lost | GB lost per TB | fewest surviving shards | "
            "stripes by fewest spare shards (2 / 1 / 0 / lost) | repair traffic, TB per TB "
            "per year (of it: outages) | moved by churn, TB per TB | longest repair backlog, "
            "h | stripes deferred | stripes one operator could lose (start / end) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        spare = o.fewest_spare
        rows.append(
            f"| {o.scheme} | {o.stripes:,} | {o.lost:,} | {o.lost / o.stripes * 1e3:.3f} | "
            f"{o.fewest_surviving} of {rates.n} | {spare['2+']:,} / {spare['1']:,} / "
            f"{spare['0']:,} / {spare['lost']:,} | {per_tb(o.repair_shards, o, rates):.2f} "
            f"({per_tb(o.outage_repair_shards, o, rates):.2f}) | "
            f"{per_tb(o.moved_shards, o, rates):.3f} | {o.longest_wait:.1f} | "
            f"{o.deferred:,} | {o.exposed_start[0]:,} / {o.exposed_end[0]:,} |")
    return rows


def no_repair_table(outcomes: list[Outcome]) -> list[str]:
    """Operator failures only, repair disabled, one row per scheme; the last two columns
    try every operator's loss alone on the initial placement."""
    rows = ["| scheme | stripes | lost by the 1st operator failure | lost by the last | "
            "GB lost per TB by the last | any one operator's loss: stripes exposed | "
            "the worst operator's loss: stripes lost |",
            "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        after = o.lost_after_operator or [0]
        rows.append(f"| {o.scheme} | {o.stripes:,} | {after[0]:,} | {after[-1]:,} | "
                    f"{after[-1] / o.stripes * 1e3:.3f} | {o.exposed_start[0]:,} | "
                    f"{o.exposed_start[1]:,} |")
    return rows


LEGEND_REPAIR = """\
Surviving shards count permanent losses only (an unreachable node's shards survive).
Spare shards = surviving - k, the fewest a stripe had during the year. Traffic is
bytes read plus written by repair (k reads per repaired stripe, one write per rebuilt
shard) per byte of shards stored; "outages": rebuilding shards of nodes still
unreachable at the audit after the outage began. Moved by churn: shards copied off
draining nodes. Backlog: from a loss's detection to the end of its repair job.
Deferred: stripe repairs put off to the next run for lack of k answering holders.
One operator could lose: stripes with more than m live shards on one operator, at
hour 0 and at the end of the year."""

LEGEND_NO_REPAIR = """\
The same operators fail at the same hours, nothing else happens and nothing is repaired.
The last two columns try the loss of each operator alone on the initial placement:
how many stripes some single operator's loss would lose, and the most any one would."""


HELP = {
    "seed": "seed of every random draw (timeline, chunk ids, repair order)",
    "days": "simulated days",
    "nodes": "nodes at hour 0",
    "operators": "operators at hour 0 (nodes split evenly; must divide --nodes)",
    "zones": "zones per operator",
    "heavy_every": "every Nth node has weight 2 (twice the capacity)",
    "k": "data shards per stripe",
    "m": "parity shards per stripe",
    "stripes": "stripes simulated under groups",
    "rendezvous_stripes": "stripes simulated under rendezvous (about 1.7 ms each to place)",
    "shard_kib": "shard size, KiB (sets how many real stripes a simulated one stands for)",
    "node_tb": "TB of shards on a weight-1 node",
    "afr": "probability a node's disk is lost within a year",
    "outages_per_month": "transient outages per node and month",
    "outage_hours": "mean length of an outage, hours (exponential)",
    "leave_rate": "probability a node leaves (drained) within a year",
    "join_rate": "nodes joining per year, as a fraction of --nodes",
    "operator_failures": "whole-operator failures per year",
    "detect_hours": "hours from a loss to its detection (the audit interval)",
    "repair_mbps": "repair and drain bandwidth per node, Mbit/s",
}
"""The ``--help`` text of each :class:`Rates` field."""


def parse_args(argv: list[str] | None = None) -> Rates:
    """The command line as :class:`Rates` (every field has a ``--flag``); exits with
    a usage message when the values do not fit together."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    for f in dataclasses.fields(Rates):
        default = f.default
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(default),
                            default=default, help=f"{HELP[f.name]} (default {default})")
    rates = Rates(**vars(parser.parse_args(argv)))
    why = rates_error(rates)
    if why:
        parser.error(why)
    return rates


def rates_error(rates: Rates) -> str | None:
    """What makes ``rates`` unusable, in words, or None."""
    if rates.operators < 1 or rates.nodes % rates.operators:
        return f"--operators {rates.operators} must divide --nodes {rates.nodes}"
    if rates.k < 1 or rates.m < 0 or rates.n > rates.nodes:
        return f"need k >= 1, m >= 0 and k + m <= nodes, got k={rates.k} m={rates.m}"
    if min(rates.zones, rates.heavy_every, rates.stripes, rates.rendezvous_stripes,
           rates.shard_kib) < 1 or min(rates.days, rates.node_tb, rates.repair_mbps,
                                       rates.outage_hours, rates.detect_hours) <= 0:
        return "sizes, counts, hours and bandwidth must be positive"
    if not all(0 <= p < 1 for p in (rates.afr, rates.leave_rate)):
        return "--afr and --leave-rate are probabilities in [0, 1)"
    if min(rates.join_rate, rates.outages_per_month) < 0:
        return "rates must be >= 0"
    if not 0 <= round(rates.operator_failures * rates.days / 365.0) < rates.operators:
        return "--operator-failures must leave at least one operator"
    return None


def main(argv: list[str] | None = None) -> None:
    """Run every available scheme with and without repair; print the tables."""
    rates = parse_args(argv)
    timeline = make_timeline(rates)
    schemes = available_schemes()
    with_repair, without = [], []
    for scheme in schemes:
        stripes = rates.rendezvous_stripes if scheme == "rendezvous" else rates.stripes
        began = time.perf_counter()
        placed = place(scheme, timeline, rates, stripes)
        print(f"# {scheme}: {stripes:,} stripes placed in {time.perf_counter() - began:.0f} s",
              file=sys.stderr)
        with_repair.append(YearSim(placed, timeline, rates, True, TIMELINE_KINDS).run())
        without.append(YearSim(placed, timeline, rates, False, frozenset({"operator"})).run())
        print(f"# {scheme}: the year with repair in {with_repair[-1].seconds:.0f} s, without "
              f"in {without[-1].seconds:.0f} s", file=sys.stderr)
    kinds = {kind: sum(1 for e in timeline.events if e.kind == kind) for kind in TIMELINE_KINDS}
    print("## A simulated year (benchmarks/durability_sim.py)\n")
    print("\n".join(rates.lines()))
    print(f"- events drawn: {kinds['fail']} node failures, {kinds['down']} outages, "
          f"{kinds['leave']} leaves, {kinds['join']} joins, {kinds['operator']} operator "
          "failures (events of nodes already gone are skipped)")
    if schemes == ["rendezvous"]:
        print("- the placement module has no `groups` scheme: rendezvous only")
    print("\n### The year, with audit and repair\n")
    print("\n".join(repair_table(with_repair, rates)))
    print("\n" + LEGEND_REPAIR)
    print("\n### Operator failures only, repair disabled\n")
    print("\n".join(no_repair_table(without)))
    print("\n" + LEGEND_NO_REPAIR)


if __name__ == "__main__":
    main()

"""Prometheus metrics of the read path, in prometheus_client's default registry.

Like any instrumented library, this module only defines and updates the
metrics; whoever runs the process exposes them (``nixshard serve`` on its
``/metrics`` route, with ``prometheus_client.generate_latest()``).  Counts
are per process.

Shard requests (one sample per request that came back, a single
``GET /shards/<id>`` or a ``POST /shards/batch-get`` of a window's shards;
label ``node`` = the node id from the network file; requests cancelled
because a hedge won are not observed):

``nixshard_shard_fetch_seconds{node}``
    histogram, seconds from asking to the answer (success or failure).
``nixshard_shards_asked_total{node}``
    counter, shards those requests asked for (one per single request).
``nixshard_shard_bytes_fetched_total{node}``
    counter, shard body bytes received (before verification: a body that
    then fails its proof counts too).
``nixshard_shard_fetch_errors_total{node, kind}``
    counter; ``kind`` is ``error`` (connection error, timeout or an
    unexpected status: :class:`~storage_network.errors.NodeError`),
    ``missing`` (the node claimed the shard but answered 404) or ``bad``
    (the body failed verification against the stripe root).

Node requests of every kind (the client side of :mod:`storage_network.nodes.http`):

``nixshard_node_queue_seconds{node}``
    histogram, seconds a request waited *inside the client* for one of the
    node's slots before it was sent: the client's own load, never held
    against the node.
``nixshard_node_timeouts_total{node, blame}``
    counter, requests that passed a deadline; ``blame`` is ``node``, or
    ``client`` when the client's event loop stalled meanwhile (such a
    timeout does not count against the node).

Chunks (one sample per chunk rebuilt by
:func:`storage_network.read.chunk_fetch.fetch_chunk`, for the daemon's reads
and, in its own process, for ``nixshard repair``):

``nixshard_chunks_fetched_total``
    counter, chunks rebuilt.
``nixshard_degraded_chunks_total``
    counter, chunks rebuilt with at least one parity shard: some data
    shard was missing, bad or slower than a parity one.  The code is
    systematic, so a chunk read from its k data shards needs no decoding
    and is not degraded.
``nixshard_decode_seconds``
    histogram, seconds spent in :meth:`StripeCodec.decode
    <storage_network.coding.codec.StripeCodec.decode>` per chunk (attempt).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from prometheus_client import Counter, Histogram

ErrorKind = Literal["error", "missing", "bad"]
Blame = Literal["node", "client"]
"""What went wrong with one shard request (see the module docstring)."""

# A LAN round trip is ~1 ms; a shard request past 10 s has long been hedged.
SHARD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0)
# Decoding one chunk (~256 KiB at ~1 GB/s) takes a fraction of a millisecond.
DECODE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 1.0)

SHARD_FETCH_SECONDS = Histogram(
    "nixshard_shard_fetch_seconds",
    "Seconds from asking a node for a shard to its answer (success or failure).",
    ["node"], buckets=SHARD_BUCKETS)
SHARDS_ASKED = Counter(
    "nixshard_shards_asked",
    "Shards asked for by shard requests that came back (a batch asks for many).",
    ["node"])
SHARD_FETCH_ERRORS = Counter(
    "nixshard_shard_fetch_errors",
    "Shard requests that gave no usable shard, by node and kind: error (connection error, "
    "timeout, unexpected status), missing (claimed but not served), bad (failed verification).",
    ["node", "kind"])
SHARD_BYTES_FETCHED = Counter(
    "nixshard_shard_bytes_fetched",
    "Shard body bytes received from each node, before verification.",
    ["node"])
CHUNKS_FETCHED = Counter(
    "nixshard_chunks_fetched",
    "Chunks rebuilt from their shards.")
DEGRADED_CHUNKS = Counter(
    "nixshard_degraded_chunks",
    "Chunks rebuilt with at least one parity shard (a data shard was missing, bad or slow).")
DECODE_SECONDS = Histogram(
    "nixshard_decode_seconds",
    "Seconds spent decoding one chunk from k verified shards.",
    buckets=DECODE_BUCKETS)


QUEUE_BUCKETS = (0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
NODE_QUEUE_SECONDS = Histogram(
    "nixshard_node_queue_seconds",
    "Seconds a node request waited inside the client for a slot before it was sent.",
    ["node"], buckets=QUEUE_BUCKETS)
NODE_TIMEOUTS = Counter(
    "nixshard_node_timeouts",
    "Node requests that passed a deadline, by whom the delay is blamed on: the node, or "
    "the client (its event loop stalled meanwhile).",
    ["node", "blame"])


def observe_node_queue(node_id: str, seconds: float) -> None:
    """Record the ``seconds`` one request to ``node_id`` waited for a slot."""
    NODE_QUEUE_SECONDS.labels(node=node_id).observe(seconds)


def node_timeout(node_id: str, blame: Blame) -> None:
    """Count one request to ``node_id`` that passed a deadline."""
    NODE_TIMEOUTS.labels(node=node_id, blame=blame).inc()


def observe_shard(node_id: str, seconds: float, nbytes: int, shards: int = 1) -> None:
    """Record one shard request (single or batch) that came back.

    Args:
        node_id: the node asked (its id in the network file).
        seconds: from asking to the answer.
        nbytes: body bytes received (0 when no body came: an error or a 404).
        shards: how many shards it asked for.
    """
    SHARD_FETCH_SECONDS.labels(node=node_id).observe(seconds)
    SHARDS_ASKED.labels(node=node_id).inc(shards)
    if nbytes:
        SHARD_BYTES_FETCHED.labels(node=node_id).inc(nbytes)


def shard_error(node_id: str, kind: ErrorKind) -> None:
    """Count one shard request of ``node_id`` that gave no usable shard, by ``kind``."""
    SHARD_FETCH_ERRORS.labels(node=node_id, kind=kind).inc()


def observe_decode(seconds: float) -> None:
    """Record the ``seconds`` one chunk's decode took (successful or not)."""
    DECODE_SECONDS.observe(seconds)


def is_degraded(indices: Collection[int], k: int) -> bool:
    """True when the first ``k`` of the fragment ``indices`` (the ones a decode uses)
    are not exactly the data shards ``0 .. k-1``, i.e. parity had to be used."""
    return sorted(indices)[:k] != list(range(k))


def chunk_fetched(indices: Collection[int], k: int) -> None:
    """Count one rebuilt chunk; degraded too when its fragments ``indices`` (shard
    indices, data ``< k``) needed parity (see :func:`is_degraded`)."""
    CHUNKS_FETCHED.inc()
    if is_degraded(indices, k):
        DEGRADED_CHUNKS.inc()

"""Prometheus metrics of the cache daemon (the gateway).

The daemon exposes the process's default registry on ``GET /metrics``: these
metrics plus the read-path metrics of :mod:`storage_network.metrics`
(per-node shard latency and errors, degraded chunks, decode time).

:data:`HTTP` counts the requests (``nixshard_gateway_requests_total{route,
method, status}``, ``nixshard_gateway_request_seconds{route, method}``,
``nixshard_gateway_bytes_sent_total{route}``,
``nixshard_gateway_bytes_received_total``, ``nixshard_gateway_aborted_total{route}``
for transfers cut off after their headers): see
:mod:`http_serving.metrics` for what is counted and when.  Routes
are labelled by their pattern (``/nar/{file}``), never by the raw path, so
the number of series stays bounded.  The metrics are created once, at
import: every gateway app of the process (several in tests) counts into them.
With ``--workers N`` each worker counts its own and ``/metrics`` sums them
(:mod:`cache_server.routes.metrics`).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge

from http_serving.metrics import RequestMetrics

HTTP = RequestMetrics("nixshard_gateway", REGISTRY)
NAR_CACHE_OUTCOMES = Counter("nixshard_gateway_nar_cache_total",
                    "NAR requests by local disk cache outcome: hit (served from disk), "
                    "join (followed a fill in progress), miss (started a fill), "
                    "bypass (not cached: cache off, NAR larger than the cache, or its entry stayed "
                    "locked by a frozen worker), "
                    "no_space (not cached: no room on the cache's disk).",
                    ["result"])
NAR_CACHE_BYTES = Gauge("nixshard_gateway_nar_cache_bytes",
                        "Bytes of NARs kept in the local disk cache.",
                        multiprocess_mode="mostrecent")  # workers share one cache
UPLOADS = Counter("nixshard_gateway_uploads_total",
                  "Uploaded store paths by outcome (stored, exists, conflict: exists with "
                  "another NarHash, rejected, failed).",
                  ["outcome"])
UPSTREAM = Counter("nixshard_gateway_upstream_total",
                   "Narinfo misses sent upstream by outcome (hit, miss, down), and "
                   "ingests of upstream paths (ingested, ingest_failed).", ["result"])

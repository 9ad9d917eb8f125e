"""Prometheus metrics of the cache daemon, and the middleware that counts requests.

The daemon exposes the process's default registry on ``GET /metrics``: these
metrics plus the read-path metrics of :mod:`storage_network.metrics`
(per-node shard latency and errors, degraded chunks, decode time).  Routes
are labelled by their pattern (``/nar/{file}``), never by the raw path, so
the number of series stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("nixshard_gateway_requests_total",
                   "HTTP requests answered, by route pattern, method and status.",
                   ["route", "method", "status"])
REQUEST_SECONDS = Histogram("nixshard_gateway_request_seconds",
                            "Seconds from request to the end of the answer, by route pattern.",
                            ["route", "method"],
                            buckets=(0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60, 300))
BYTES_SENT = Counter("nixshard_gateway_bytes_sent_total",
                     "Body bytes sent, by route pattern.", ["route"])
NAR_CACHE_OUTCOMES = Counter("nixshard_gateway_nar_cache_total",
                    "NAR requests by local disk cache outcome: hit (served from disk), "
                    "join (followed a fill in progress), miss (started a fill), "
                    "bypass (not cached: cache off or NAR larger than the cache).",
                    ["result"])
NAR_CACHE_BYTES = Gauge("nixshard_gateway_nar_cache_bytes",
                        "Bytes of NARs kept in the local disk cache.")
UPLOADS = Counter("nixshard_gateway_uploads_total",
                  "Uploaded store paths by outcome (stored, exists, rejected, failed).",
                  ["outcome"])
UPSTREAM = Counter("nixshard_gateway_upstream_total",
                   "Narinfo misses sent upstream by outcome (hit, miss, down), and "
                   "ingests of upstream paths (ingested, ingest_failed).", ["result"])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_label(request: web.Request) -> str:
    """The canonical pattern of the matched route (``unmatched`` when none matched)."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request by route, method and status; time it; count body bytes sent.

    A response the handler returns unsent is sent here, so its time and
    size are known; ``FileResponse`` (sendfile) counts its Content-Length.
    """
    start = time.monotonic()
    route = route_label(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            await response.prepare(request)
            await response.write_eof()
        if request.method != "HEAD":
            sent = (response.content_length or 0) if isinstance(response, web.FileResponse) \
                else response.body_length
            BYTES_SENT.labels(route).inc(sent)
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        REQUESTS.labels(route, request.method, str(status)).inc()
        REQUEST_SECONDS.labels(route, request.method).observe(time.monotonic() - start)

"""Prometheus metrics of HTTP requests, for the HTTP servers of the network
(storage nodes and gateways): one :class:`RequestMetrics` per program.

A :class:`RequestMetrics` made with prefix ``<prefix>`` holds, in the
registry it is given:

``<prefix>_requests_total{route, method, status}``
    counter, answered requests.  ``route`` is the matched route's pattern
    (``/shards/{id}``, ``/nar/{file}``; never the raw path); ``unmatched``
    when no route matched, and for 405 answers (aiohttp matches no route
    then).  ``method`` is the HTTP method, ``other`` for one outside
    :data:`METHODS`.  ``status`` is the status sent, ``499`` when the
    handler was cancelled before it answered (the client went away).
    Refusals made by middlewares (auth, error mapping) count with their
    own status when :meth:`RequestMetrics.middleware` runs outermost.
``<prefix>_request_seconds{route, method}``
    histogram, seconds from the start of the middlewares until the
    response headers are ready (time to first byte; the body is written
    after).  Answers made before any middleware runs (a refusal on
    ``Expect: 100-continue``) are counted above but not timed.
``<prefix>_bytes_sent_total{route}``
    counter, response body bytes.  The response's Content-Length when its
    headers go out (0 for ``HEAD``, 1xx, 204 and 304): a file sent with
    sendfile counts its length (of the range, for a 206), and an aborted
    transfer counts the length it announced.  A body streamed without a
    Content-Length counts the bytes written, headers and chunk framing
    included, once the handler returns (one the handler returns unprepared
    is not counted: none of the servers does that).
``<prefix>_bytes_received_total``
    counter, request body bytes read off the connection when the answer
    is made.
``<prefix>_aborted_total{route}``
    counter, answers whose transfer was cut off after the headers (the
    body could not be completed, or the client went away), marked by the
    handler with :func:`mark_aborted`.  Such an answer is counted in
    ``requests_total`` with the status the client really got (200, 206),
    and the access log marks its line ``aborted``
    (:mod:`http_serving.access_log`).

Every answer is counted once, when it is prepared (``on_response_prepare``,
hooked by :func:`setup`): the status is final then, also for answers
middlewares make of exceptions, aiohttp's 500 for a crash, and a
``FileResponse``'s 206/304/416.  A plain :class:`aiohttp.web.Response`
the handler returns unprepared is counted by the middleware as it returns it
(status and length are final then; the hook then sees it counted).  Nothing
here prepares or sends a response.  The registry is the caller's: a node has
one per app (several nodes may run in one process), a gateway uses the
process's default one.  Exposed in the classic text format, :data:`CONTENT_TYPE`.

Cost per request (the gateway's narinfo answers are a few tens of µs): the
middleware can also answer errors and run an auth check
(:meth:`RequestMetrics.middleware` with ``errors`` and ``guard``), one
coroutine instead of three; and outside prometheus_client's multiprocess
mode the counts go to plain ints folded into the metrics whenever the
registry is collected (:mod:`http_serving.tallies`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram

from .tallies import Folder, Tally, multiprocess_mode

if TYPE_CHECKING:  # errors imports this module
    from .errors import ErrorMap

Guard = Callable[[web.Request], Awaitable[None] | None]
"""A check run before the handler (the gateway's auth): None when the request needs
none, else an awaitable that raises to refuse it."""

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What :func:`prometheus_client.generate_latest` writes (the classic text format 0.0.4)."""

UNMATCHED = "unmatched"
CANCELLED_STATUS = "499"
METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"})
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Request key of the request's _Pending (a RequestKey where aiohttp has them), also where
# mark_aborted keeps its reason.
_PENDING: Any = (web.RequestKey("nixshard_http_metrics", object) if hasattr(web, "RequestKey")
                 else "nixshard_http_metrics")


def route_label(request: web.Request) -> str:
    """The canonical pattern of the route ``request`` matched (``/shards/{id}``), or
    ``unmatched``."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


def method_label(method: str) -> str:
    """``method``, or ``other`` for one outside :data:`METHODS` (bounds the label values)."""
    return method if method in METHODS else "other"


def announced_body_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int | None:
    """Body bytes a response being prepared will send: 0 when it has no body
    (``HEAD``, 1xx, 204, 304), its Content-Length, or None (a stream without one)."""
    status = response.status
    if request.method == "HEAD" or status < 200 or status == 204 or status == 304:
        return 0
    return response.content_length


@dataclass(slots=True)
class _Pending:
    """What the middleware knows of a request it is running."""

    started: float | None  # perf_counter seconds; None: no middleware ran
    counted: bool = False
    stream: web.StreamResponse | None = None  # prepared without a Content-Length
    aborted: str | None = None  # why the transfer was cut off (mark_aborted)


class RequestMetrics:
    """The request metrics of one program (see the module docstring).

    Create it once per registry: prometheus_client refuses a second set of
    the same names in one registry.  In a process that keeps its own metric
    values (not prometheus_client's multiprocess mode) answers are counted in
    plain ints and folded into the metrics whenever the registry is
    collected (:mod:`http_serving.tallies`).

    Args:
        prefix: the metric names' prefix (``nixshard_node``, ``nixshard_gateway``).
        registry: where the metrics are registered.
    """

    def __init__(self, prefix: str, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._folder = None if multiprocess_mode() else Folder()
        if self._folder is not None:  # before the metrics: folds before they are read
            self._folder.register(registry)
        self.requests = Counter(
            f"{prefix}_requests", "Requests answered, by route pattern, method and status.",
            ["route", "method", "status"], registry=registry)
        self.seconds = Histogram(
            f"{prefix}_request_seconds",
            "Seconds from the start of the middlewares until the response headers were ready.",
            ["route", "method"], buckets=REQUEST_BUCKETS, registry=registry)
        self.bytes_sent = Counter(
            f"{prefix}_bytes_sent", "Response body bytes sent, by route pattern.", ["route"],
            registry=registry)
        self.bytes_received = Counter(
            f"{prefix}_bytes_received", "Request body bytes received.", registry=registry)
        self.aborted = Counter(
            f"{prefix}_aborted",
            "Answers whose transfer was cut off after the headers, by route pattern (counted "
            "in requests_total with the status sent).", ["route"], registry=registry)
        if self._folder is not None:
            self._folder.fold_received_into(self.bytes_received)
        # labels() validates, joins and locks (several µs): each child is looked up once.
        # Keys are bounded: route patterns, METHODS + "other", statuses.
        self._tallies: dict[tuple[str, str, int | str], Tally] = {}
        self._sent: dict[str, Counter] = {}
        self._bounds = (*REQUEST_BUCKETS, float("inf"))

    def _tally_of(self, request: web.Request, status: int | str) -> Tally:
        """The tally of ``request``'s route and method with ``status``."""
        key = (route_label(request), method_label(request.method), status)
        found = self._tallies.get(key)
        if found is None:
            route, method, _ = key
            found = self._tallies[key] = Tally(
                self.requests.labels(route, method, str(status)),
                self.seconds.labels(route, method), self._sent_child(route), self._bounds)
            if self._folder is not None:
                self._folder.tallies.append(found)
        return found

    def _sent_child(self, route: str) -> Counter:
        """The ``bytes_sent`` child of ``route`` (a route label)."""
        found = self._sent.get(route)
        if found is None:
            found = self._sent[route] = self.bytes_sent.labels(route=route)
        return found

    def count(self, request: web.Request, status: int | str, seconds: float | None,
              sent: int = 0) -> None:
        """Count one answered request, and the request body bytes read so far.

        Args:
            status: the status sent (or :data:`CANCELLED_STATUS`).
            seconds: from the start of the middlewares to the answer's headers, or
                None when not timed.
            sent: response body bytes announced (its Content-Length).
        """
        tally = self._tally_of(request, status)
        received = request.content.total_bytes
        folder = self._folder
        if folder is None:
            tally.add_now(seconds, sent)
            if received:
                self.bytes_received.inc(received)
        else:
            tally.add(seconds, sent)
            if received:
                folder.received += received

    def middleware(self, errors: ErrorMap | None = None,
                   guard: Guard | None = None) -> Middleware:
        """The outermost middleware: starts each request's clock.

        The answer is counted when it is prepared (:meth:`on_response_prepare`),
        or, for a plain :class:`aiohttp.web.Response` the handler returns
        unprepared, uncompressed and not chunked (its status and length are
        final then), by this middleware as it returns it: the hook then only
        sees it counted.
        A handler cancelled before it answered counts as ``499``; a body
        streamed without Content-Length is counted once the handler is done.

        One middleware instead of three (each costs a coroutine per request):
        with ``errors`` it also answers what the guard or the handler raises by
        that map, as :func:`http_serving.errors.error_middleware` would (which
        the app then does not run); ``guard`` (only with ``errors``) is awaited
        before the handler when it returns an awaitable.
        """
        if guard is not None and errors is None:
            raise ValueError("a guard's refusals need an error map")

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = perf_counter()
            pending = request[_PENDING] = _Pending(started)
            try:
                try:
                    if guard is not None:
                        check = guard(request)
                        if check is not None:
                            await check
                    response = await handler(request)
                except Exception as exc:  # not CancelledError: a BaseException
                    if errors is None or (isinstance(exc, web.HTTPException)
                                          and exc.status < 400):  # a redirect is an answer
                        raise
                    rule = errors.rule_for(exc)
                    if rule is None:
                        raise
                    response = await errors.handle(request, exc, rule)
            except asyncio.CancelledError:
                if not pending.counted:
                    pending.counted = True
                    self.count(request, CANCELLED_STATUS, perf_counter() - started)
                raise
            finally:
                if pending.stream is not None:  # headers and chunk framing included
                    self._sent_child(route_label(request)).inc(pending.stream.body_length)
            if (not pending.counted and isinstance(response, web.Response)
                    and not response.prepared and not response.compression
                    and not response.chunked):  # its Content-Length is known: no stream
                pending.counted = True
                self._count_answer(request, response, perf_counter() - started)
            return response

        return middleware

    async def on_response_prepare(self, request: web.Request,
                                  response: web.StreamResponse) -> None:
        """``on_response_prepare``: count the request's answer, once.  Answers no
        middleware saw (``Expect`` refusals) are counted untimed."""
        try:
            pending = request[_PENDING]
        except KeyError:
            pending = request[_PENDING] = _Pending(started=None)
        if pending.counted:
            return
        pending.counted = True
        started = pending.started
        pending.stream = self._count_answer(
            request, response, None if started is None else perf_counter() - started)

    def _count_answer(self, request: web.Request, response: web.StreamResponse,
                      seconds: float | None) -> web.StreamResponse | None:
        """Count ``response`` (status and announced body bytes) as ``request``'s answer,
        timed ``seconds`` (None: untimed); ``response`` when its body bytes are only
        known once it is written (no Content-Length), else None."""
        body = announced_body_bytes(request, response)
        self.count(request, response.status, seconds, body or 0)
        return response if body is None else None


REQUEST_METRICS = web.AppKey("request_metrics", RequestMetrics)


def mark_aborted(request: web.Request, reason: str) -> None:
    """Record that ``request``'s answer was cut off after its headers, and why.

    Counted once in ``<prefix>_aborted_total{route}`` of the app's
    :class:`RequestMetrics` (when :func:`setup` was called for it) and shown
    by :func:`aborted` (the access log's ``aborted`` field).  ``reason`` is
    a short text (``"network"``, ``"client gone"``, ...).
    """
    try:
        pending = request[_PENDING]
    except KeyError:  # no metrics here (or not yet): the reason still needs a home
        pending = request[_PENDING] = _Pending(started=None)
    if pending.aborted is not None:
        return
    pending.aborted = reason
    metrics = request.app.get(REQUEST_METRICS)
    if metrics is not None:
        metrics.aborted.labels(route=route_label(request)).inc()


def aborted(request: web.BaseRequest) -> str | None:
    """Why ``request``'s answer was cut off after its headers (see :func:`mark_aborted`),
    or None when it was not."""
    try:  # every answer the metrics counted has its _Pending: no failed lookup
        pending: _Pending = request[_PENDING]
    except KeyError:
        return None
    return pending.aborted


def setup(app: web.Application, metrics: RequestMetrics) -> None:
    """Count the answers of ``app`` in ``metrics`` (kept as ``app[REQUEST_METRICS]``).

    The app must also run ``metrics.middleware()`` first of its middlewares.
    """
    app[REQUEST_METRICS] = metrics
    app.on_response_prepare.append(metrics.on_response_prepare)

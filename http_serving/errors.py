"""The one error middleware of both servers: exceptions become HTTP answers by a table.

Each server keeps its exception tree in its own package (``cache_server.errors``,
``storage_node.errors``) and one exhaustive :class:`ErrorMap` (its
``responses`` module): an ordered list of :class:`Rule`, the first rule whose
exception types match wins.  Handlers (and the middlewares inside this one)
just raise; :func:`error_middleware` answers with the rule's status, headers
and a plain-text body made from the server's body format (``error:
<message>``), and logs what was wrong:

- a refusal (bad input, an absent object, a network that cannot tell): one
  line ``refused METHOD 'PATH' from PEER: STATUS MESSAGE`` on the server's
  logger, without a traceback, at WARNING (DEBUG for a 404: clients probe
  for objects that may be absent);
- a crash (a rule with ``crash`` set: a bug, a disk error): ``<crash> on
  METHOD 'PATH' from PEER`` at ERROR with the traceback;
- a client that went away (a rule with ``client_gone``): one INFO line
  ``client went away during METHOD 'PATH' from PEER (TYPE: MESSAGE)``, and the
  connection is aborted.

An exception that no rule matches propagates (aiohttp then answers 500 and
logs it).  aiohttp's :class:`~aiohttp.web.HTTPException` below 400 (a
redirect) always propagates: it is an answer, not an error.

Never a second answer: when the exception comes after the handler sent its
response's headers (a streamed body), the answer cannot change any more, so
the error is logged as above (a refusal as one ERROR line ``aborting the
answer to METHOD 'PATH' from PEER after its headers: MESSAGE``), the answer
is marked aborted
(:func:`http_serving.metrics.mark_aborted` with ``client gone``,
``internal error`` or ``refused``: the access log and the
``<prefix>_aborted_total`` counter, with the status the client got) and the
connection is aborted, so the client sees a cut transfer and never a clean
short end.  To know what was sent, handlers that stream start their answer with
:func:`start_answer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from .metrics import mark_aborted

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]

# Request key of the response whose headers went out (see start_answer).
_PREPARED: Any = web.RequestKey("nixshard_http_prepared", web.StreamResponse)


@dataclass(frozen=True)
class Rule:
    """How the exceptions of ``kinds`` are answered.

    Args:
        kinds: the exception type(s) this rule answers (subclasses included).
        status: the HTTP status, or a function of the exception giving it.
        headers: extra response headers, or a function of the exception giving them.
        message: the text of the body and of the log line (default ``str(exc)``).
        close: close the connection once the answer is out (the rest of the
            request's body is not worth reading, e.g. a stalled upload).
        crash: not a refusal but a fault of the server: logged as ``<crash> on
            <request>`` with its traceback.
        client_gone: the client went away: logged at INFO, the connection aborted.
    """

    kinds: ExceptionTypes
    status: int | Callable[[Any], int]
    headers: Mapping[str, str] | Callable[[Any], Mapping[str, str]] = field(
        default_factory=dict)
    message: Callable[[Any], str] = str
    close: bool = False
    crash: str | None = None
    client_gone: bool = False

    def status_of(self, exc: BaseException) -> int:
        """The status answered for ``exc``."""
        return self.status if isinstance(self.status, int) else self.status(exc)

    def headers_of(self, exc: BaseException) -> Mapping[str, str]:
        """The extra headers answered for ``exc``."""
        return self.headers(exc) if callable(self.headers) else self.headers


class ErrorMap:
    """A server's exhaustive exception -> HTTP answer table (see the module docstring).

    Args:
        rules: the rules, most specific exception types first (the first match wins).
        logger: where refusals, crashes and departed clients are logged.
        body: the plain-text body, ``{}`` standing for the rule's message.
    """

    def __init__(self, rules: Sequence[Rule], logger: logging.Logger, body: str) -> None:
        self.rules = tuple(rules)
        self.logger = logger
        self.body = body

    def rule_for(self, exc: BaseException) -> Rule | None:
        """The first rule matching ``exc``, or None when no rule does."""
        for rule in self.rules:
            if isinstance(exc, rule.kinds):
                return rule
        return None

    def answer(self, request: web.BaseRequest, exc: BaseException,
               rule: Rule | None = None) -> web.Response:
        """Log ``exc`` and build its answer (not sent: the caller returns it).

        Raises:
            LookupError: no rule matches ``exc``.
        """
        rule = rule or self.rule_for(exc)
        if rule is None:
            raise LookupError(f"no rule answers {type(exc).__name__}")
        status, message = rule.status_of(exc), rule.message(exc)
        self._log(request, exc, rule, status, message)
        return web.Response(status=status, text=self.body.format(message),
                            headers=rule.headers_of(exc) or None)

    def _log(self, request: web.BaseRequest, exc: BaseException, rule: Rule, status: int,
             message: str, *, after_headers: bool = False) -> None:
        if rule.client_gone:
            self.logger.info("client went away during %s (%s: %s)", describe(request),
                             type(exc).__name__, str(exc)[:120] or "connection lost")
        elif rule.crash is not None:
            self.logger.error("%s on %s", rule.crash, describe(request), exc_info=exc)
        elif after_headers:
            self.logger.error("aborting the answer to %s after its headers: %s",
                              describe(request), message)
        else:
            level = logging.DEBUG if status == 404 else logging.WARNING
            if self.logger.isEnabledFor(level):  # a 404 is usually not: skip describe()
                self.logger.log(level, "refused %s: %d %s", describe(request), status, message)

    async def handle(self, request: web.Request, exc: Exception,
                     rule: Rule) -> web.StreamResponse:
        """The answer to ``exc``, matched by ``rule``, raised by ``request``'s handler."""
        prepared: web.StreamResponse | None = request.get(_PREPARED)
        if prepared is not None:  # the headers went out: never a second answer
            self._log(request, exc, rule, prepared.status, rule.message(exc),
                      after_headers=True)
            mark_aborted(request, "client gone" if rule.client_gone else
                         "internal error" if rule.crash is not None else "refused")
            _abort(request)
            return prepared  # already prepared: aiohttp sends nothing more
        response = self.answer(request, exc, rule)
        if rule.client_gone:  # nobody to answer; counted with the rule's status (499)
            _abort(request)
        elif rule.close:
            await _send_and_close(request, response)
        return response


def describe(request: web.BaseRequest) -> str:
    """``METHOD 'PATH' from PEER``, as the log lines name a request."""
    return f"{request.method} {request.raw_path[:200]!r} from {request.remote or '?'}"


def _abort(request: web.BaseRequest) -> None:
    if request.transport is not None:
        request.transport.abort()


async def _send_and_close(request: web.Request, response: web.Response) -> None:
    """Send ``response`` now and close the connection once it is out (aiohttp would
    otherwise keep reading the rest of the request's body for its lingering time)."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # closes after the buffered answer is flushed


ERROR_MAP = web.AppKey("error_map", ErrorMap)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer what the handler raises by the app's :class:`ErrorMap` (module docstring).

    The app must have been given its map with :func:`setup`.  Put it right
    inside the request metrics' middleware, so refusals of the middlewares
    after it (auth, body budget) are answered too.
    """
    try:
        return await handler(request)
    except Exception as exc:
        if isinstance(exc, web.HTTPException) and exc.status < 400:
            raise
        errors = request.app[ERROR_MAP]
        rule = errors.rule_for(exc)
        if rule is None:
            raise
        return await errors.handle(request, exc, rule)


async def start_answer(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Send ``response``'s headers now (a handler streaming its body): the error
    middleware then knows the answer has begun and never sends a second one.

    Handlers that prepare a response themselves call this instead of
    ``response.prepare(request)`` (a per-response ``on_response_prepare`` hook
    would cost every plain answer about 1.5% of the gateway's narinfo rate).
    """
    request[_PREPARED] = response
    await response.prepare(request)


def setup(app: web.Application, errors: ErrorMap) -> None:
    """Answer ``app``'s errors by ``errors`` (kept as ``app[ERROR_MAP]``).

    The app must also run :func:`error_middleware`.
    """
    app[ERROR_MAP] = errors

"""The gateway's one exception -> status map (cache_server.responses.ERRORS), the shared
error middleware (http_serving.errors) as the gateway uses it, and its routes registry."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cache_server import errors, routes
from cache_server.responses import AUTH_REALM, ERRORS
from cache_server.upstream import UpstreamUnavailableError
from cache_server.upstream_ingest import UpstreamFileError
from http_serving import errors as http_errors
from nix_formats.errors import NixFormatError
from storage_network import errors as net_errors
from tests.support import error_maps
from tests.support.error_maps import Client

STATUSES: dict[type[Exception], int] = {
    errors.BadRequestError: 400, errors.UploadRejectedError: 400,
    errors.UnauthorizedError: 401, errors.ForbiddenError: 403,
    errors.NotServedError: 404, errors.NoSuchNarError: 404,
    errors.PathConflictError: 409, errors.UploadTooLargeError: 413,
    errors.RangeNotSatisfiableError: 416, errors.BadRecordError: 502,
    UpstreamUnavailableError: 502, UpstreamFileError: 502,
    errors.InsufficientStorageError: 507,
    NixFormatError: 400, net_errors.NotFoundError: 404, net_errors.RecordConflictError: 409,
    net_errors.RecordError: 502, net_errors.RecordUnavailableError: 503,
    net_errors.ChunkUnavailableError: 503, net_errors.NodeTimeoutError: 503,
    net_errors.StorageNetworkError: 503, net_errors.QuotaExceededError: 402,
}


def _make(cls: type[Exception]) -> Exception:
    if cls is errors.RangeNotSatisfiableError:
        return errors.RangeNotSatisfiableError("no byte", size=10)
    try:
        return cls("what was wrong")
    except TypeError:  # exceptions with more arguments: not built by their __init__
        exc = cls.__new__(cls)
        Exception.__init__(exc, "what was wrong")
        return exc


def test_every_cache_server_error_has_its_status() -> None:
    below = error_maps.subclasses(errors.CacheServerError) - {errors.CacheServerError}
    assert below <= set(STATUSES)
    error_maps.check_statuses(ERRORS, STATUSES, _make)


@pytest.mark.parametrize(("upstream", "status"), [
    (404, 404), (403, 404), (410, 404), (416, 416), (500, 502), (None, 502)])
def test_an_upstream_failure_is_answered_by_what_the_upstream_said(upstream: int | None,
                                                                   status: int) -> None:
    exc = UpstreamUnavailableError("upstream says no", status=upstream)
    rule = ERRORS.rule_for(exc)
    assert rule is not None and rule.status_of(exc) == status


def test_every_route_module_is_registered() -> None:
    error_maps.check_routes_registered(routes)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    """An app answering by the gateway's map, with routes raising on demand."""
    app = web.Application(middlewares=[http_errors.error_middleware])
    http_errors.setup(app, ERRORS)

    async def raising(request: web.Request) -> web.StreamResponse:
        what = request.match_info["what"]
        if what == "range":
            raise errors.RangeNotSatisfiableError("Range selects no byte", size=1234)
        if what == "auth":
            raise errors.UnauthorizedError("this request needs credentials")
        if what == "redirect":
            raise web.HTTPFound("/elsewhere")
        if what == "bug":
            raise ValueError("a bug")
        raise net_errors.NotFoundError(f"no {what}")

    app.router.add_get("/raise/{what}", raising)
    app.router.add_get("/cut", error_maps.failing_after_headers(
        net_errors.ChunkUnavailableError("chunk 1 of 2: 3 of 6 shards reachable")))
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_refusals_get_status_headers_and_one_log_line(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="nixshard.serve")
    resp = await client.get("/raise/range")
    assert resp.status == 416 and resp.headers["Content-Range"] == "bytes */1234"
    assert await resp.text() == "error: Range selects no byte\n"
    resp = await client.get("/raise/auth")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == AUTH_REALM
    resp = await client.head("/raise/thing")
    assert resp.status == 404 and await resp.read() == b""
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "nixshard.serve"]
    assert [(level, text.split(" from ")[0]) for level, text in lines] == [
        (logging.WARNING, "refused GET '/raise/range'"),
        (logging.WARNING, "refused GET '/raise/auth'"),
        (logging.DEBUG, "refused HEAD '/raise/thing'")]
    assert lines[0][1].endswith(": 416 Range selects no byte")
    assert all(r.exc_info is None for r in caplog.records)


async def test_redirects_and_unmapped_exceptions_pass_through(client: Client) -> None:
    resp = await client.get("/raise/redirect", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/elsewhere"
    resp = await client.get("/raise/bug")
    assert resp.status == 500  # aiohttp's own answer to a bug


async def test_an_error_after_the_headers_aborts_the_connection(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nixshard.serve")
    await error_maps.check_cut_short(client, "/cut")
    errors_logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors_logged) == 1
    assert errors_logged[0].startswith("aborting the answer to GET '/cut' from ")
    assert errors_logged[0].endswith("after its headers: chunk 1 of 2: 3 of 6 shards reachable")

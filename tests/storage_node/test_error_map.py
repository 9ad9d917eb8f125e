"""The node's one exception -> status map (storage_node.responses.ERRORS) and its routes
registry: every refusal class has its status, crashes never end an answer cleanly."""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from storage_network.wire.write_auth import Publisher
from storage_node import errors, routes
from storage_node.app import create_app
from storage_node.config import NodeConfig
from storage_node.responses import ERRORS
from tests.support import error_maps
from tests.support.error_maps import Client

STATUSES = {
    errors.RequestError: 400, errors.BadRequest: 400, errors.BodyTruncated: 400,
    errors.BodyStalled: 408, errors.Unauthorized: 401, errors.Forbidden: 403,
    errors.Replayed: 403, errors.NotFound: 404, errors.PreconditionFailed: 412,
    errors.Conflict: 409, errors.PayloadTooLarge: 413, errors.Busy: 503,
    errors.Unprocessable: 422, errors.OverQuota: 402,
}


def test_every_request_error_has_its_status_and_is_no_crash() -> None:
    assert error_maps.subclasses(errors.RequestError) == set(STATUSES)
    rules = error_maps.check_statuses(ERRORS, STATUSES, lambda cls: cls("what was wrong"))
    for cls, rule in rules.items():
        assert rule.crash is None and not rule.client_gone, cls


@pytest.mark.parametrize(("exc", "status", "crash"), [
    (OSError(errno.ENOSPC, "No space left on device"), 507, "storage error"),
    (OSError(errno.EIO, "Input/output error"), 500, "storage error"),
    (ValueError("a bug"), 500, "internal error"),
])
def test_crashes_are_500_or_507_and_logged_as_crashes(exc: Exception, status: int,
                                                      crash: str) -> None:
    rule = ERRORS.rule_for(exc)
    assert rule is not None and rule.crash == crash and rule.status_of(exc) == status


def test_every_route_module_is_registered() -> None:
    error_maps.check_routes_registered(routes)


@pytest.fixture
async def broken(tmp_path: Path, publisher: Publisher) -> AsyncIterator[Client]:
    """A node app with two extra routes that fail with a disk error, before and after
    their headers."""
    app = create_app(NodeConfig(tmp_path / "data", "node-1",
                                {publisher.name: publisher.public}))

    async def full(request: web.Request) -> web.StreamResponse:
        raise OSError(errno.ENOSPC, "No space left on device")

    app.router.add_get("/test/full", full)
    app.router.add_get("/test/cut", error_maps.failing_after_headers(
        OSError(errno.EIO, "Input/output error")))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_full_disk_is_507_in_the_error_format(broken: Client) -> None:
    resp = await broken.get("/test/full")
    assert resp.status == 507
    assert await resp.text() == "error: storage error: No space left on device"


async def test_a_crash_after_the_headers_aborts_instead_of_a_second_answer(
        broken: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nixshard")
    await error_maps.check_cut_short(broken, "/test/cut")
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(" from ")[0] for r in crashes] == [
        "storage error on GET '/test/cut'"]
    assert crashes[0].exc_info is not None
    metrics = await (await broken.get("/metrics")).text()
    assert 'nixshard_node_aborted_total{route="/test/cut"} 1.0' in metrics
    assert ('nixshard_node_requests_total{method="GET",route="/test/cut",status="200"} 1.0'
            in metrics)

"""The node's one exception -> status map (storage_node.responses.ERRORS) and its routes
registry: every refusal class has its status, crashes never end an answer cleanly."""

from __future__ import annotations

import errno
import logging
import pkgutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from storage_network.wire.write_auth import Publisher
from storage_node import errors, routes
from storage_node.app import create_app
from storage_node.config import NodeConfig
from storage_node.responses import ERRORS

STATUSES = {
    errors.RequestError: 400, errors.BadRequest: 400, errors.BodyTruncated: 400,
    errors.BodyStalled: 408, errors.Unauthorized: 401, errors.Forbidden: 403,
    errors.Replayed: 403, errors.NotFound: 404, errors.PreconditionFailed: 412,
    errors.Conflict: 409, errors.PayloadTooLarge: 413, errors.Busy: 503,
    errors.Unprocessable: 422,
}


def _subclasses(cls: type) -> set[type]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _subclasses(sub)
    return found


def test_every_request_error_has_its_status_and_is_no_crash() -> None:
    assert _subclasses(errors.RequestError) == set(STATUSES)
    for cls, status in STATUSES.items():
        exc = cls("what was wrong")
        rule = ERRORS.rule_for(exc)
        assert rule is not None and rule.crash is None and not rule.client_gone, cls
        assert rule.status_of(exc) == status, cls


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
    names = {m.name for m in pkgutil.iter_modules(routes.__path__)}
    assert names == {m.__name__.rsplit(".", 1)[1] for m in routes.MODULES}
    assert all(m.setup.__doc__ for m in routes.MODULES)


@pytest.fixture
async def broken(tmp_path: Path, publisher: Publisher) -> AsyncIterator[TestClient]:
    """A node app with two extra routes that fail with a disk error, before and after
    their headers."""
    app = create_app(NodeConfig(tmp_path / "data", "node-1",
                                {publisher.name: publisher.public}))

    async def full(request: web.Request) -> web.StreamResponse:
        raise OSError(errno.ENOSPC, "No space left on device")

    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "2000"})
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        raise OSError(errno.EIO, "Input/output error")

    app.router.add_get("/test/full", full)
    app.router.add_get("/test/cut", cut)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_full_disk_is_507_in_the_error_format(broken: TestClient) -> None:
    resp = await broken.get("/test/full")
    assert resp.status == 507
    assert await resp.text() == "error: storage error: No space left on device"


async def test_a_crash_after_the_headers_aborts_instead_of_a_second_answer(
        broken: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nixshard")
    async with broken.get("/test/cut") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):  # cut short, never a clean end
            await resp.read()
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(" from ")[0] for r in crashes] == [
        "storage error on GET '/test/cut'"]
    assert crashes[0].exc_info is not None
    metrics = await (await broken.get("/metrics")).text()
    assert 'nixshard_node_aborted_total{route="/test/cut"} 1.0' in metrics
    assert ('nixshard_node_requests_total{method="GET",route="/test/cut",status="200"} 1.0'
            in metrics)

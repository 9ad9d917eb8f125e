"""Checks of a server's exception -> status map (:class:`http_serving.errors.ErrorMap`)
and its ``routes/`` package, shared by the node's and the gateway's tests."""

from __future__ import annotations

import pkgutil
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from http_serving.errors import ErrorMap, Rule, start_answer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
E = TypeVar("E", bound=Exception)
Client = TestClient[web.Request, web.Application]
"""A test client of an in-process app."""


def subclasses(cls: type) -> set[type]:
    """``cls`` and every class below it."""
    found = {cls}
    sub: type
    for sub in cls.__subclasses__():
        found |= subclasses(sub)
    return found


def check_statuses(errors: ErrorMap, statuses: Mapping[type[E], int],
                   make: Callable[[type[E]], Exception]) -> dict[type[E], Rule]:
    """Assert that an exception ``make(cls)`` of each class of ``statuses`` has a rule
    in ``errors`` answering its status; the rules, by class."""
    rules: dict[type[E], Rule] = {}
    for cls, status in statuses.items():
        exc = make(cls)
        rule = errors.rule_for(exc)
        assert rule is not None and rule.status_of(exc) == status, cls
        rules[cls] = rule
    return rules


def check_routes_registered(routes: ModuleType) -> None:
    """Assert that every module of a ``routes`` package is in its ``MODULES``, each with
    a documented ``setup``."""
    names = {m.name for m in pkgutil.iter_modules(routes.__path__)}
    assert names == {m.__name__.rsplit(".", 1)[1] for m in routes.MODULES}
    assert all(m.setup.__doc__ for m in routes.MODULES)


def failing_after_headers(exc: Exception) -> Handler:
    """A handler that announces 2000 bytes, sends 1000, then raises ``exc``."""
    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "2000"})
        await start_answer(request, resp)
        await resp.write(b"x" * 1000)
        raise exc

    return cut


async def check_cut_short(client: Client, path: str) -> None:
    """Assert that GET ``path`` answers 200 and its body ends short, never cleanly."""
    async with client.get(path) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()

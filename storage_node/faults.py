"""TEST-ONLY fault modes: a node that misbehaves on purpose, for read-path tests.

``nixshard node --fault MODE[,MODE...]`` is refused unless the environment
has ``NIXSHARD_TEST_FAULTS=1`` (see :func:`faults_allowed`).  Modes:

``stall=SECONDS``
    every request except ``GET /healthz`` sleeps that long before it is handled;
``flip``
    every shard body served by ``GET /shards/{id}`` or ``POST /shards/batch-get``
    has its middle byte flipped;
``short``
    every shard body served by ``GET /shards/{id}`` or ``POST /shards/batch-get``
    is cut to its first half, sent well-framed (Content-Length, or the batch
    frame's length, = the half);
``lie-has``
    ``POST /shards/has`` answers that every asked id is present; a ``GET`` of
    a shard the node lacks still answers 404.

The modes live in an aiohttp middleware (:func:`fault_middleware`) that
:func:`storage_node.app.create_app` installs only when some mode is set;
a batch answer is altered per shard by its handler, with :func:`mangle_shard`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .errors import BadRequest

if TYPE_CHECKING:
    from .store import Store

ENV_VAR = "NIXSHARD_TEST_FAULTS"
MAX_HAS_BODY_BYTES = 2 * 1024 * 1024
_SHARD_ROUTE = "/shards/{id}"
_HAS_ROUTE = "/shards/has"


class FaultSpecError(ValueError):
    """A ``--fault`` value that names no mode or gives a mode a bad value."""


@dataclass(frozen=True)
class Faults:
    """The fault modes a node runs with (all off by default).

    Attributes:
        stall: seconds every request but ``/healthz`` waits before it is
            handled; ``None`` for no stall.
        flip: flip the middle byte of every served shard body.
        short: serve the first half of every shard body.
        lie_has: claim every shard asked about in ``POST /shards/has``.
    """

    stall: float | None = None
    flip: bool = False
    short: bool = False
    lie_has: bool = False

    @property
    def active(self) -> bool:
        """True if any mode is on."""
        return self.stall is not None or self.flip or self.short or self.lie_has

    def describe(self) -> str:
        """The modes as ``--fault`` would spell them, e.g. ``stall=10,flip``."""
        modes = [] if self.stall is None else [f"stall={self.stall:g}"]
        modes += [name for name, on in (("flip", self.flip), ("short", self.short),
                                        ("lie-has", self.lie_has)) if on]
        return ",".join(modes)


def faults_allowed(environ: Mapping[str, str]) -> bool:
    """True when ``environ`` has ``NIXSHARD_TEST_FAULTS=1``."""
    return environ.get(ENV_VAR) == "1"


def parse_faults(specs: Iterable[str]) -> Faults:
    """Parse ``--fault`` values, each ``MODE[,MODE...]``.

    Raises:
        FaultSpecError: an empty or unknown mode, a mode given twice,
            ``stall`` without a positive finite number of seconds, or a value
            given to ``flip``, ``short`` or ``lie-has``.
    """
    stall: float | None = None
    flags: set[str] = set()
    seen: set[str] = set()
    for spec in specs:
        for item in spec.split(","):
            name, eq, value = item.strip().partition("=")
            name = name.strip()
            if not name:
                raise FaultSpecError(f"empty fault mode in {spec!r}: want "
                                     "stall=SECONDS, flip, short or lie-has")
            if name in seen:
                raise FaultSpecError(f"fault mode {name!r} is given twice")
            seen.add(name)
            if name == "stall":
                stall = _parse_stall(value if eq else None)
            elif name in ("flip", "short", "lie-has"):
                if eq:
                    raise FaultSpecError(f"fault mode {name!r} takes no value, got {item!r}")
                flags.add(name)
            else:
                raise FaultSpecError(f"unknown fault mode {name!r}: want stall=SECONDS, "
                                     "flip, short or lie-has")
    return Faults(stall, "flip" in flags, "short" in flags, "lie-has" in flags)


def _parse_stall(value: str | None) -> float:
    if value is None:
        raise FaultSpecError("fault mode 'stall' needs seconds: stall=SECONDS")
    try:
        seconds = float(value)
    except ValueError:
        raise FaultSpecError(f"stall={value!r}: not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise FaultSpecError(f"stall={value!r}: want a positive number of seconds")
    return seconds


def mangle_shard(body: bytes, faults: Faults) -> bytes:
    """The shard body as a faulty node serves it (``short`` first, then ``flip``)."""
    if faults.short:
        body = body[:len(body) // 2]
    if faults.flip and body:
        mangled = bytearray(body)
        mangled[len(mangled) // 2] ^= 0xFF
        body = bytes(mangled)
    return body


def _route(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return None if resource is None else resource.canonical


async def _lying_has(request: web.Request) -> web.Response:
    """Claim every id of a ``{"ids": [...]}`` body (no id is checked)."""
    if (request.content_length or 0) > MAX_HAS_BODY_BYTES:
        raise BadRequest("has request body too large (fault mode lie-has)")
    try:
        doc = json.loads(await request.read())
    except ValueError as exc:
        raise BadRequest(f"has request body is not JSON: {exc}") from exc
    ids = doc.get("ids") if isinstance(doc, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest('has request body must be {"ids": [shard id, ...]}')
    return web.json_response({"present": ids})


def fault_middleware(faults: Faults, store: Store,
                     sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                     ) -> Middleware:
    """An aiohttp middleware that applies ``faults`` (see the module docstring).

    Args:
        store: the node's store: a faulty ``GET /shards/{id}`` reads the
            shard file itself to serve the altered body.
        sleep: how a stall waits (seconds); tests pass a recorder.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if faults.stall is not None and request.path != "/healthz":
            await sleep(faults.stall)
        route = _route(request)
        if faults.lie_has and request.method == "POST" and route == _HAS_ROUTE:
            return await _lying_has(request)
        response = await handler(request)
        if (faults.flip or faults.short) and request.method == "GET" \
                and route == _SHARD_ROUTE and response.status == 200:
            path = store.shard_path(request.match_info["id"])
            body = mangle_shard(await asyncio.to_thread(path.read_bytes), faults)
            return web.Response(body=body, content_type="application/octet-stream")
        return response

    return middleware

"""TEST-ONLY fault modes: a node that misbehaves on purpose, for read-path and chaos tests.

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
    a shard the node lacks still answers 404;
``deep-json``
    every JSON answer (``POST /shards/has``, the batch-put and record-put
    acks; not ``/healthz``, not error answers, which are text) is replaced by
    100,000 nested ``[`` (:data:`DEEP_JSON`), well-framed, same status;
``endless``
    ``GET /records/{key}``, ``POST /shards/has``, ``POST /shards/batch-get`` and
    ``POST /records/batch-get`` answer 200 and then stream ``[`` bytes forever
    (chunked, no Content-Length), until the client goes away; the request is
    not looked at;
``trickle=BYTES_PER_SECOND``
    those same four answers carry their real content, sent at that rate
    (a piece every tenth of a second, or one byte at a time below 10 bytes/s);
    a record or ``has`` answer keeps its Content-Length;
``slow-has=SECONDS``
    ``POST /shards/has`` waits that long before it is handled (nothing else does);
``stale-records``
    ``GET /records/{key}`` (and ``POST /records/batch-get``) serves the first
    version this node ever stored for the key, even after a newer version or a
    tombstone replaced it: a copy of each key's first version is kept under
    ``<data dir>/fault-first-records/`` (so it survives restarts).

``endless`` and ``trickle`` cannot be combined.  The modes live in an
aiohttp middleware (:func:`fault_middleware`) that
:func:`storage_node.app.create_app` installs only when some mode is set; a
batch-get answer is altered by its handler, per shard with
:func:`mangle_shard` or per record with :func:`read_first_record`, and paced with
:func:`trickle_write`.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from http_serving.errors import start_answer
from storage_network.wire.record import RECORD_KEY_RE
from storage_network.wire.stripe import SHARD_ID_RE

from .errors import BadRequest
from .store import Store

ENV_VAR = "NIXSHARD_TEST_FAULTS"
MAX_HAS_BODY_BYTES = 2 * 1024 * 1024
DEEP_JSON = b"[" * 100_000
"""What ``deep-json`` answers: nested deeper than any JSON parser's default limit."""
FIRST_RECORDS_DIR = "fault-first-records"
"""Where ``stale-records`` keeps each key's first version, under the data directory."""
TRICKLE_TICK_SECONDS = 0.1
_ENDLESS_BLOCK = b"[" * 65536
_SHARD_ROUTE = "/shards/{id}"
_HAS_ROUTE = "/shards/has"
_BATCH_GET_ROUTE = "/shards/batch-get"
_RECORD_ROUTE = "/records/{key}"
_RECORD_BATCH_ROUTE = "/records/batch-get"
# The answers ``endless`` and ``trickle`` act on, as (method, route).
_SLOWED = {("GET", _RECORD_ROUTE), ("POST", _HAS_ROUTE), ("POST", _BATCH_GET_ROUTE),
           ("POST", _RECORD_BATCH_ROUTE)}
_RECORD_HEADERS = {"Content-Type": "application/octet-stream", "Cache-Control": "no-cache"}

Sleep = Callable[[float], Awaitable[None]]


class FaultSpecError(ValueError):
    """A ``--fault`` value that names no mode or gives a mode a bad value."""


@dataclass(frozen=True)
class Faults:
    """The fault modes a node runs with (all off by default; see the module docstring).

    Attributes:
        stall: seconds every request but ``/healthz`` waits; None for no stall.
        flip: flip the middle byte of every served shard body.
        short: serve the first half of every shard body.
        lie_has: claim every shard asked about in ``POST /shards/has``.
        deep_json: answer every JSON answer with :data:`DEEP_JSON`.
        endless: stream record, ``has`` and batch-get answers forever.
        trickle: bytes per second record, ``has`` and batch-get answers are
            sent at; None for full speed.
        slow_has: seconds ``POST /shards/has`` waits; None for no wait.
        stale_records: serve the first version stored of every record.
    """

    stall: float | None = None
    flip: bool = False
    short: bool = False
    lie_has: bool = False
    deep_json: bool = False
    endless: bool = False
    trickle: float | None = None
    slow_has: float | None = None
    stale_records: bool = False

    @property
    def active(self) -> bool:
        """True if any mode is on."""
        return self.describe() != ""

    def describe(self) -> str:
        """The modes as ``--fault`` would spell them, e.g. ``stall=10,flip``."""
        modes = []
        for name, (attr, _, _) in _VALUED.items():
            value = getattr(self, attr)
            if value is not None:
                modes.append(f"{name}={value:g}")
        modes += [name for name, attr in _FLAGS.items() if getattr(self, attr)]
        return ",".join(modes)


# mode -> (attribute, what the value names, its unit in messages)
_VALUED = {"stall": ("stall", "SECONDS", "seconds"),
           "trickle": ("trickle", "BYTES_PER_SECOND", "bytes per second"),
           "slow-has": ("slow_has", "SECONDS", "seconds")}
_FLAGS = {"flip": "flip", "short": "short", "lie-has": "lie_has", "deep-json": "deep_json",
          "endless": "endless", "stale-records": "stale_records"}
_WANT = ", ".join([f"{name}={meta[1]}" for name, meta in _VALUED.items()] + list(_FLAGS))


def faults_allowed(environ: Mapping[str, str]) -> bool:
    """True when ``environ`` has ``NIXSHARD_TEST_FAULTS=1``."""
    return environ.get(ENV_VAR) == "1"


def parse_faults(specs: Iterable[str]) -> Faults:
    """Parse ``--fault`` values, each ``MODE[,MODE...]``.

    Raises:
        FaultSpecError: an empty or unknown mode, a mode given twice, a
            valued mode (``stall``, ``trickle``, ``slow-has``) without a
            positive finite number, a value given to a flag mode, or
            ``endless`` with ``trickle``.
    """
    numbers: dict[str, float] = {}
    flags: set[str] = set()
    for spec in specs:
        for item in spec.split(","):
            name, eq, value = item.strip().partition("=")
            name = name.strip()
            if not name:
                raise FaultSpecError(f"empty fault mode in {spec!r}: want one of {_WANT}")
            if name in _VALUED:
                attr = _VALUED[name][0]
            elif name in _FLAGS:
                attr = _FLAGS[name]
            else:
                raise FaultSpecError(f"unknown fault mode {name!r}: want one of {_WANT}")
            if attr in numbers or attr in flags:
                raise FaultSpecError(f"fault mode {name!r} is given twice")
            if name in _VALUED:
                numbers[attr] = _parse_number(name, value if eq else None)
            elif eq:
                raise FaultSpecError(f"fault mode {name!r} takes no value, got {item!r}")
            else:
                flags.add(attr)
    if "endless" in flags and "trickle" in numbers:
        raise FaultSpecError("fault modes 'endless' and 'trickle' cannot be combined")
    return Faults(stall=numbers.get("stall"), trickle=numbers.get("trickle"),
                  slow_has=numbers.get("slow_has"),
                  **{attr: attr in flags for attr in _FLAGS.values()})


def _parse_number(name: str, value: str | None) -> float:
    _, placeholder, unit = _VALUED[name]
    if value is None:
        raise FaultSpecError(f"fault mode {name!r} needs {unit}: {name}={placeholder}")
    try:
        number = float(value)
    except ValueError:
        raise FaultSpecError(f"{name}={value!r}: not a number of {unit}") from None
    if not math.isfinite(number) or number <= 0:
        raise FaultSpecError(f"{name}={value!r}: want a positive number of {unit}")
    return number


def mangle_shard(body: bytes, faults: Faults) -> bytes:
    """The shard body as a faulty node serves it (``short`` first, then ``flip``)."""
    if faults.short:
        body = body[:len(body) // 2]
    if faults.flip and body:
        mangled = bytearray(body)
        mangled[len(mangled) // 2] ^= 0xFF
        body = bytes(mangled)
    return body


def _mangled_shard(store: Store, request: web.Request, faults: Faults) -> bytes | None:
    """The held shard of a ``GET /shards/{id}``, mangled; None when the id is malformed
    or not held (the handler answers then).  Blocking."""
    sid = request.match_info.get("id", "")
    if not SHARD_ID_RE.fullmatch(sid):
        return None
    try:
        return mangle_shard(store.shard_path(sid).read_bytes(), faults)
    except FileNotFoundError:
        return None


async def _pause(seconds: float) -> None:
    """How the fault modes wait by default (tests put a recorder here)."""
    await asyncio.sleep(seconds)


async def trickle_write(resp: web.StreamResponse, data: bytes, rate: float,
                        sleep: Sleep | None = None) -> None:
    """Write ``data`` to the prepared ``resp`` at ``rate`` bytes per second: a piece of
    ``rate`` x :data:`TRICKLE_TICK_SECONDS` bytes (at least 1) and then a pause."""
    wait = sleep if sleep is not None else _pause
    step = max(1, int(rate * TRICKLE_TICK_SECONDS))
    for start in range(0, len(data), step):
        piece = data[start:start + step]
        await resp.write(piece)
        await wait(len(piece) / rate)


def _route(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return None if resource is None else resource.canonical


async def _lying_has(request: web.Request) -> web.Response:
    """Claim every id of a ``{"ids": [...]}`` body (no id is checked but its type)."""
    from .body import json_type, parse_json, read_body  # body -> appkeys -> config -> here

    body, _ = await read_body(request, MAX_HAS_BODY_BYTES, "has request (fault mode lie-has)")
    doc = parse_json(body, "has request")
    ids = doc.get("ids") if isinstance(doc, dict) else None
    if not isinstance(ids, list):
        raise BadRequest(f'has request body must be {{"ids": [shard id, ...]}}, not a JSON '
                         f"{json_type(doc)}")
    for item in ids:
        if not isinstance(item, str):
            raise BadRequest(f"bad shard id: a JSON {json_type(item)}, not a string")
    return web.json_response({"present": ids})


async def _endless(request: web.Request) -> NoReturn:
    """Answer 200 and stream ``[`` bytes until the client goes away (a write then raises)."""
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/octet-stream"})
    resp.enable_chunked_encoding()
    await start_answer(request, resp)
    while True:
        await resp.write(_ENDLESS_BLOCK)
        await asyncio.sleep(0)  # a reader as fast as the writer must not starve the loop


async def _trickled(request: web.Request, response: web.Response, rate: float,
                    sleep: Sleep | None) -> web.StreamResponse:
    """``response``'s body sent at ``rate`` bytes per second, with its Content-Length."""
    body = response.body
    assert isinstance(body, bytes)
    out = web.StreamResponse(status=response.status, headers=response.headers)
    out.content_length = len(body)
    await start_answer(request, out)
    if request.method != "HEAD":
        await trickle_write(out, body, rate, sleep)
    await out.write_eof()
    return out


def _first_record_path(store: Store, key: str) -> Path:
    return store.root / FIRST_RECORDS_DIR / key


def _keep_first_record(store: Store, key: str) -> None:
    """Copy the held version of ``key`` aside unless a first version is kept (blocking)."""
    kept = _first_record_path(store, key)
    if kept.exists():
        return
    kept.parent.mkdir(exist_ok=True)
    temp = kept.with_suffix(".part")
    try:
        shutil.copyfile(store.record_path(key), temp)
    except FileNotFoundError:
        return
    os.replace(temp, kept)


def read_first_record(store: Store, key: str) -> bytes | None:
    """What ``stale-records`` serves for ``key``: the first version stored, None when
    none was kept (blocking)."""
    try:
        return _first_record_path(store, key).read_bytes()
    except FileNotFoundError:
        return None


def _is_json(response: web.StreamResponse) -> bool:
    return (isinstance(response, web.Response) and not response.prepared
            and response.content_type == "application/json")


def fault_middleware(faults: Faults, store: Store, sleep: Sleep | None = None) -> Middleware:
    """An aiohttp middleware that applies ``faults`` (see the module docstring).

    Args:
        store: the node's store: a faulty ``GET /shards/{id}`` reads the
            shard file itself to serve the altered body; ``stale-records``
            keeps first versions beside it.
        sleep: how the stall, slow-has and trickle modes wait (seconds);
            tests pass a recorder.  Default: :func:`asyncio.sleep`.
    """
    wait = sleep if sleep is not None else _pause

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if faults.stall is not None and request.path != "/healthz":
            await wait(faults.stall)
        route, method = _route(request), request.method
        if faults.slow_has is not None and method == "POST" and route == _HAS_ROUTE:
            await wait(faults.slow_has)
        slowed = (method, route) in _SLOWED
        if faults.endless and slowed:
            await _endless(request)
        key = request.match_info.get("key", "") if route == _RECORD_ROUTE else ""
        stale = faults.stale_records and RECORD_KEY_RE.fullmatch(key) is not None
        if (faults.flip or faults.short) and method == "GET" and route == _SHARD_ROUTE:
            mangled = await asyncio.to_thread(_mangled_shard, store, request, faults)
            if mangled is not None:
                return web.Response(body=mangled, content_type="application/octet-stream")
        response: web.StreamResponse
        first = None
        if stale and method in ("GET", "HEAD"):
            first = await asyncio.to_thread(read_first_record, store, key)
        if first is not None:
            response = web.Response(body=first, headers=_RECORD_HEADERS)
        elif faults.lie_has and method == "POST" and route == _HAS_ROUTE:
            response = await _lying_has(request)
        else:
            if stale and method == "PUT":  # a version held from before this PUT is the first
                await asyncio.to_thread(_keep_first_record, store, key)
            response = await handler(request)
            if stale and method == "PUT" and response.status in (200, 201):
                await asyncio.to_thread(_keep_first_record, store, key)
        if faults.deep_json and request.path != "/healthz" and _is_json(response):
            response = web.Response(status=response.status, body=DEEP_JSON,
                                    content_type="application/json")
        if faults.trickle is not None and slowed and response.status == 200 \
                and isinstance(response, web.Response) and not response.prepared \
                and isinstance(response.body, bytes):
            return await _trickled(request, response, faults.trickle, wait)
        return response

    return middleware

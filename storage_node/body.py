"""Reading request bodies: under a size cap, within the node's body budget, with a stall
deadline; hashing them, noticing truncation, and parsing JSON bodies defensively."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .appkeys import BUDGET, CONFIG
from .errors import BadRequest, BodyStalled, BodyTruncated, PayloadTooLarge

# What reading a body raises when the client goes away before sending all of it.
_READ_ERRORS = (OSError, aiohttp.ClientError, HttpProcessingError, asyncio.IncompleteReadError)


def check_declared_length(request: web.BaseRequest, limit: int, what: str) -> None:
    """Refuse up front a body whose Content-Length exceeds ``limit`` bytes.

    Raises:
        PayloadTooLarge: Content-Length > ``limit``.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(
            f"{what} body of {declared} bytes exceeds the limit of {limit} bytes")


async def read_body(request: web.Request, limit: int, what: str,
                    sink: Callable[[bytes], object] | None = None) -> tuple[bytearray, bytes]:
    """Read the whole body, at most ``limit`` bytes, passing each piece to ``sink``.

    Works for Content-Length and chunked bodies alike: the cap is checked on
    the declared length first, then on the bytes actually received.  Before
    the first byte is read, room for the body (its declared length, or
    ``limit`` for a chunked one) is reserved in the node's
    :class:`~storage_node.budget.BodyBudget` until the request is answered;
    each piece must come within ``body_stall_seconds`` of the previous one.

    Returns:
        ``(body, sha256)``: the body and its 32-byte SHA-256 digest.

    Raises:
        PayloadTooLarge: more than ``limit`` bytes declared or received.
        Busy: no room in the body budget came free in time (nothing was read).
        BodyStalled: no byte came for ``body_stall_seconds`` seconds.
        BodyTruncated: the connection ended before the declared length arrived.
    """
    check_declared_length(request, limit, what)
    declared = request.content_length
    await request.app[BUDGET].reserve(request, limit if declared is None else declared, what)
    stall = request.app[CONFIG].body_stall_seconds
    body = bytearray()
    digest = hashlib.sha256()
    try:
        while True:
            try:
                async with asyncio.timeout(stall):
                    piece = await request.content.readany()
            except TimeoutError:
                of = f" of {declared}" if declared is not None else ""
                raise BodyStalled(f"{what} body stalled: no byte for {stall:g} s after "
                                  f"{len(body)}{of} bytes") from None
            if not piece:
                break
            if len(body) + len(piece) > limit:
                raise PayloadTooLarge(f"{what} body exceeds the limit of {limit} bytes")
            body += piece
            digest.update(piece)
            if sink is not None:
                sink(piece)
    except _READ_ERRORS as exc:
        of = f" of {declared}" if declared is not None else ""
        raise BodyTruncated(f"{what} body truncated: the client sent {len(body)}{of} bytes "
                            f"and closed the connection ({exc.__class__.__name__})") from exc
    if declared is not None and len(body) != declared:
        raise BodyTruncated(f"{what} body truncated: got {len(body)} of {declared} bytes")
    return body, digest.digest()


def parse_json(data: bytes | bytearray, what: str) -> object:
    """Parse a JSON request body of any shape (the caller checks the shape).

    Raises:
        BadRequest: not UTF-8 JSON, or nested too deeply to parse (a
            ``RecursionError`` never escapes).
    """
    try:
        return json.loads(data)
    except RecursionError:
        raise BadRequest(f"{what} body is not JSON: nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"{what} body is not JSON: {str(exc)[:120]}") from None


def json_type(value: object) -> str:
    """The JSON name of ``value``'s type (``array``, ``object``, ...), for refusals that
    must not echo an arbitrarily large or deep value."""
    if isinstance(value, bool):
        return "boolean"
    for kind, name in ((dict, "object"), (list, "array"), (str, "string"),
                       ((int, float), "number")):
        if isinstance(value, kind):
            return name
    return "null"

"""Reading request bodies under a size cap, hashing them, and noticing truncation."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .errors import BodyTruncated, PayloadTooLarge

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


async def read_body(request: web.BaseRequest, limit: int, what: str,
                    sink: Callable[[bytes], object] | None = None) -> tuple[bytearray, bytes]:
    """Read the whole body, at most ``limit`` bytes, passing each piece to ``sink``.

    Works for Content-Length and chunked bodies alike: the cap is checked on
    the declared length first, then on the bytes actually received.

    Returns:
        ``(body, sha256)``: the body and its 32-byte SHA-256 digest.

    Raises:
        PayloadTooLarge: more than ``limit`` bytes declared or received.
        BodyTruncated: the connection ended before the declared length arrived.
    """
    check_declared_length(request, limit, what)
    declared = request.content_length
    body = bytearray()
    digest = hashlib.sha256()
    try:
        async for piece in request.content.iter_any():
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

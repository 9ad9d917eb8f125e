"""How ``nixshard doctor`` asks a node or the gateway over HTTP: one ``GET``, bounded in
time and in the bytes read, whose failure is an observation, not an exception."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

ANSWER_LIMIT = 64 * 1024
"""Bytes of a ``/healthz`` or ``/nix-cache-info`` answer read at most."""


@dataclass(frozen=True)
class HttpAnswer:
    """The answer to one of the doctor's ``GET`` requests.

    Attributes:
        status: its HTTP status.
        date: its ``Date`` header, or None.
        body: the first bytes of its body (at most the ``limit`` asked for).
        received: this machine's ``time.time()`` when its headers came in.
    """

    status: int
    date: str | None
    body: bytes
    received: float


async def http_get(session: aiohttp.ClientSession, url: str, path: str, timeout: float,
                   limit: int) -> HttpAnswer | str:
    """``GET`` ``path`` of the server at base URL ``url`` (redirects not followed) and up
    to ``limit`` bytes of its body, within ``timeout`` seconds.

    Returns:
        The answer, or why there is none: a message naming ``GET path`` (no answer
        in time, or the request failed).  Never raises for either.
    """
    try:
        async with asyncio.timeout(timeout):
            async with session.get(url.rstrip("/") + path, allow_redirects=False) as resp:
                received = time.time()
                chunks: list[bytes] = []
                size = 0
                while size < limit:
                    chunk = await resp.content.read(limit - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                return HttpAnswer(resp.status, resp.headers.get("Date"), b"".join(chunks),
                                  received)
    except TimeoutError:
        return f"no answer to GET {path} within {timeout:g} s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return f"GET {path} failed: {type(exc).__name__}: {exc}"[:300]


def json_object(body: bytes | str) -> dict[str, Any] | None:
    """``body`` as a JSON object, or None when it is not one: not JSON, not UTF-8, another
    JSON value, or nested too deeply for the parser (``[`` * 65536 raises
    :class:`RecursionError`, which a hostile server must not turn into a traceback)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None

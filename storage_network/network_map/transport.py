"""The map routes of a node, seen from a client: ``GET /map``, ``GET /map/{epoch}``,
``PUT /map`` (the node side is :mod:`storage_node.routes.network_map`).

Every answer is hostile input: its length is capped (a declared length over
the cap is refused before a byte is read), every request has a deadline, and
what comes back is parsed by :func:`~.signatures.parse_signed_map`.
"""

from __future__ import annotations

import asyncio

import aiohttp

from storage_network.errors import NodeAnswerError, NodeError, NodeStatusError, NodeTimeoutError

from .document import MAX_MAP_BYTES
from .signatures import SignedMap, parse_signed_map

DEFAULT_TIMEOUT = 10.0
"""Seconds one map request may take, connection to last byte."""
ERROR_ANSWER_BYTES = 4096
"""Bytes of a refusal's text kept (the rest is not read)."""


async def _read_capped(resp: aiohttp.ClientResponse, limit: int, what: str,
                       cut: bool = False) -> bytes:
    """The answer's body, at most ``limit`` bytes; with ``cut`` (a refusal's text) the
    rest is dropped unread instead of failing."""
    declared = resp.content_length
    if not cut and declared is not None and declared > limit:
        raise NodeAnswerError(f"{what}: answer of {declared} bytes, at most {limit} expected")
    pieces: list[bytes] = []
    got = 0
    while piece := await resp.content.readany():
        got += len(piece)
        if got > limit:
            if cut:
                pieces.append(piece[:limit - got])
                break
            raise NodeAnswerError(f"{what}: answer over {limit} bytes")
        pieces.append(piece)
    return b"".join(pieces)


async def _exchange(session: aiohttp.ClientSession, method: str, url: str, *,
                    body: bytes | None, limit: int, timeout: float) -> tuple[int, bytes]:
    what = f"{method} {url}"
    try:
        async with asyncio.timeout(timeout):
            headers = {"Content-Type": "application/json"} if body is not None else None
            async with session.request(method, url, data=body, headers=headers,
                                       allow_redirects=False) as resp:
                ok = resp.status in (200, 201)
                data = await _read_capped(resp, limit if ok else ERROR_ANSWER_BYTES, what,
                                          cut=not ok)
                return resp.status, data
    except TimeoutError:
        raise NodeTimeoutError(f"{what}: no whole answer within {timeout:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise NodeError(f"{what} failed: {type(exc).__name__} {exc}"[:400]) from None


def _refusal(status: int, data: bytes) -> str:
    return data[:300].decode("utf-8", "replace").strip()


async def get_map(session: aiohttp.ClientSession, base_url: str, epoch: int | None = None,
                  *, timeout: float = DEFAULT_TIMEOUT,
                  limit: int = MAX_MAP_BYTES) -> SignedMap | None:
    """The map a node serves: its newest (``epoch`` None) or that epoch; None when the
    node answers 404 (it holds none).  Signatures are not checked here.

    Raises:
        NodeError: unreachable, too slow (:class:`NodeTimeoutError`), another status
            (:class:`NodeStatusError`), an answer over ``limit`` bytes
            (:class:`NodeAnswerError`).
        MapError: the answer is not a well-formed signed map.
    """
    url = base_url.rstrip("/") + ("/map" if epoch is None else f"/map/{epoch}")
    status, data = await _exchange(session, "GET", url, body=None, limit=limit,
                                   timeout=timeout)
    if status == 404:
        return None
    if status != 200:
        raise NodeStatusError(f"GET {url} -> {status} {_refusal(status, data)}", status)
    return parse_signed_map(data, limit)


async def put_map(session: aiohttp.ClientSession, base_url: str, signed: SignedMap, *,
                  timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
    """Offer ``signed`` to a node.

    Returns:
        ``(status, text)``: 201 (now its newest), 200 (held already, or an older
        epoch it lacked), 409 (stale, a gap, or another document for that epoch),
        422 (signatures not valid), 4xx others; ``text`` is the node's answer
        (``error: <why>`` for a refusal), cut to 300 characters.

    Raises:
        NodeError: unreachable or too slow.
    """
    url = base_url.rstrip("/") + "/map"
    status, data = await _exchange(session, "PUT", url, body=signed.to_bytes(),
                                   limit=ERROR_ANSWER_BYTES, timeout=timeout)
    return status, _refusal(status, data)

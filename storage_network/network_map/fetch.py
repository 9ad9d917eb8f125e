"""Fetching the newest valid map from nodes, and keeping it fresh while running.

:func:`fetch_map_chain` asks several nodes for their newest map at once, then
walks every epoch from the trusted one up to the newest any of them claims,
each checked against the one before (:func:`~.signatures.verify_next`); an
epoch comes from the first node whose copy verifies.  A node serving an older
epoch, a malformed or wrongly signed map, or nothing at all is ignored with
one log line.  :class:`MapRefresher` repeats that every N seconds and hands
each newer :class:`~storage_network.config.Network` to a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Self

import aiohttp

from storage_network.config import Network
from storage_network.errors import MapError, NodeError

from .bootstrap import Bootstrap, map_urls
from .document import MAX_MAP_BYTES
from .signatures import SignedMap, TrustRoot, verify_next
from .transport import DEFAULT_TIMEOUT, get_map

log = logging.getLogger("nixshard.network_map")

Trusted = SignedMap | Bootstrap | TrustRoot
"""What a client starts from: a map it trusts, a bootstrap file, or a trust root."""
DEFAULT_CONCURRENCY = 8
"""Nodes asked at once."""


def trust_root_of(trusted: Trusted) -> TrustRoot:
    """The :class:`TrustRoot` of a trusted map, bootstrap or root."""
    if isinstance(trusted, TrustRoot):
        return trusted
    return trusted.trust_root()


async def _newest_of(session: aiohttp.ClientSession, url: str, gate: asyncio.Semaphore,
                     timeout: float, limit: int) -> SignedMap | None:
    async with gate:
        try:
            return await get_map(session, url, timeout=timeout, limit=limit)
        except (NodeError, MapError) as exc:
            log.warning("network map: %s: ignored: %s", url, exc)
            return None


async def fetch_map_chain(trusted: Trusted, urls: Iterable[str], *,
                          session: aiohttp.ClientSession | None = None,
                          timeout: float = DEFAULT_TIMEOUT, limit: int = MAX_MAP_BYTES,
                          concurrency: int = DEFAULT_CONCURRENCY) -> list[SignedMap]:
    """Every valid epoch after ``trusted`` that the nodes at ``urls`` serve, in order.

    Args:
        trusted: where trust starts (a map's maintainers sign the epoch after it; a
            bootstrap's sign epoch 1).
        urls: node base URLs (duplicates asked once).
        session: an HTTP session to use (default: one of its own, closed after).
        timeout: seconds per request; limit: bytes per answer.
        concurrency: requests at once.

    Returns:
        The verified maps ``trusted.epoch + 1 .. newest``, empty when no node serves a
        newer valid epoch.  The walk stops at the first epoch no node serves validly.
        Never raises for a node's failure (each is logged once).
    """
    root = trust_root_of(trusted)
    urls = list(dict.fromkeys(u.rstrip("/") for u in urls))
    if not urls:
        return []
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        gate = asyncio.Semaphore(concurrency)
        answers = await asyncio.gather(*(_newest_of(session, url, gate, timeout, limit)
                                         for url in urls))
        claims: list[tuple[int, str, SignedMap]] = []
        for url, newest in zip(urls, answers, strict=True):
            if newest is None:
                continue
            if newest.epoch <= root.epoch:
                if newest.epoch < root.epoch:
                    log.info("network map: %s serves epoch %d, older than the trusted %s: "
                             "ignored", url, newest.epoch, root.source)
                continue
            claims.append((newest.epoch, url, newest))
        claims.sort(key=lambda c: -c[0])
        chain: list[SignedMap] = []
        for epoch in range(root.epoch + 1, claims[0][0] + 1 if claims else 0):
            found = await _epoch_from(session, claims, epoch, root, timeout, limit)
            if found is None:
                break
            chain.append(found)
            root = found.trust_root()
        return chain
    finally:
        if own:
            await session.close()


async def _epoch_from(session: aiohttp.ClientSession, claims: list[tuple[int, str, SignedMap]],
                      epoch: int, root: TrustRoot, timeout: float,
                      limit: int) -> SignedMap | None:
    """Epoch ``epoch`` from the first node claiming it whose copy follows ``root``."""
    reasons = []
    for newest_epoch, url, newest in claims:
        if newest_epoch < epoch:
            break
        try:
            candidate = newest if newest_epoch == epoch else await get_map(
                session, url, epoch, timeout=timeout, limit=limit)
            if candidate is None:
                reasons.append(f"{url}: does not hold it")
                continue
            if candidate.epoch != epoch:
                raise MapError(f"asked for epoch {epoch}, got epoch {candidate.epoch}")
            verify_next(root, candidate)
            return candidate
        except (NodeError, MapError) as exc:
            log.warning("network map: %s: epoch %d ignored: %s", url, epoch, exc)
            reasons.append(f"{url}: {exc}")
    log.warning("network map: no node serves a valid epoch %d (%s)", epoch,
                "; ".join(reasons)[:1000])
    return None


async def fetch_newest_map(trusted: Trusted, urls: Iterable[str] = (), *,
                           session: aiohttp.ClientSession | None = None,
                           timeout: float = DEFAULT_TIMEOUT,
                           limit: int = MAX_MAP_BYTES) -> SignedMap:
    """The newest valid map the nodes serve, checked along every epoch from ``trusted``.

    Asks ``urls`` and, besides, the bootstrap's URLs (for a :class:`Bootstrap`) or the
    trusted map's nodes (for a :class:`SignedMap`).

    Returns:
        The newest verified map; ``trusted`` itself when it is a map and no node
        serves a newer one.

    Raises:
        MapError: ``trusted`` is not a map and no node serves a valid epoch 1 or later.
    """
    urls = list(urls)
    if isinstance(trusted, Bootstrap):
        urls += trusted.urls
    elif isinstance(trusted, SignedMap):
        urls += map_urls(trusted)
    chain = await fetch_map_chain(trusted, urls, session=session, timeout=timeout, limit=limit)
    if chain:
        return chain[-1]
    if isinstance(trusted, SignedMap):
        return trusted
    raise MapError(f"no node of {sorted(set(urls))[:10]} serves a valid map after "
                   f"{trust_root_of(trusted).source}")


OnNetwork = Callable[[Network], Awaitable[None] | None]


class MapRefresher:
    """Keeps the newest valid map while a program runs.

    Every ``every`` seconds it asks the nodes of its current map (and ``urls``) for
    newer epochs; on a newer valid one it calls ``on_network`` with the new
    :class:`~storage_network.config.Network` (a plain function or a coroutine
    function; an exception it raises is logged, not propagated).  Use it as an
    async context manager (the loop runs inside), or call :meth:`refresh` yourself::

        async with MapRefresher(bootstrap, on_network=apply) as refresher:
            ...  # refresher.current: the newest valid SignedMap (None before the first)

    Args:
        trusted: the starting point (a bootstrap, an older map, a trust root).
        urls: more node URLs to ask.
        every: seconds between refreshes (> 0).
        timeout: seconds per request.
    """

    def __init__(self, trusted: Trusted, *, on_network: OnNetwork | None = None,
                 urls: Iterable[str] = (), every: float = 300.0,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if not every > 0:
            raise ValueError(f"every must be a positive number of seconds, got {every}")
        self.current: SignedMap | None = trusted if isinstance(trusted, SignedMap) else None
        self._trusted = trusted
        self._urls = list(urls) + (list(trusted.urls) if isinstance(trusted, Bootstrap)
                                   else [])
        self._on_network = on_network
        self.every = every
        self.timeout = timeout
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> SignedMap | None:
        """Ask once; returns the new newest map (after ``on_network`` ran), or None when
        nothing newer is served."""
        start: Trusted = self.current if self.current is not None else self._trusted
        urls = self._urls + (list(map_urls(self.current)) if self.current else [])
        chain = await fetch_map_chain(start, urls, timeout=self.timeout)
        if not chain:
            return None
        self.current = chain[-1]
        log.info("network map: now at epoch %d", self.current.epoch)
        if self._on_network is not None:
            try:
                result = self._on_network(self.current.network)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("network map: the callback for epoch %d failed",
                              self.current.epoch)
        return self.current

    async def run(self) -> None:
        """Refresh now and then every :attr:`every` seconds, until cancelled."""
        while True:
            try:
                await self.refresh()
            except (MapError, NodeError) as exc:  # not expected: fetch logs node failures
                log.warning("network map: refresh failed: %s", exc)
            await asyncio.sleep(self.every)

    async def __aenter__(self) -> Self:
        """Start :meth:`run` as a task."""
        self._task = asyncio.get_running_loop().create_task(self.run())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        """Stop the task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

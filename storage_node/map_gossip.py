"""Passing maps between nodes: push a newer map to the peers, pull newer ones from them.

When the node takes a new newest map (:class:`~.map_store.MapStore` listeners),
it offers it at once to every peer the map names (http(s) nodes not removed,
this node excepted), at most :data:`PUSH_CONCURRENCY` at a time, each request
under a deadline: it asks the peer's newest epoch (``GET /map``) and sends
each epoch after it that this node holds, oldest first.  A peer that could not
be reached or refused is logged once and tried again on the next round.

Every ``every`` seconds a round runs: pull from up to :data:`PULL_SAMPLE`
random peers (and the bootstrap's nodes while no map is held) every valid
epoch after the newest held, fill in the epoch before the oldest held when a
peer has it, then push to the peers not known to hold the newest.  An older
or invalid map served by a peer is ignored with one log line
(:func:`storage_network.network_map.fetch_map_chain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import aiohttp
from aiohttp import web

from storage_network.errors import MapError, NodeError
from storage_network.network_map import SignedMap, fetch_map_chain, map_urls
from storage_network.network_map.transport import get_map, put_map

from .config import DEFAULT_GOSSIP_SECONDS
from .errors import RequestError
from .map_store import MapStore

log = logging.getLogger("nixshard.node")

PUSH_CONCURRENCY = 4
PULL_SAMPLE = 3
DEFAULT_PEER_TIMEOUT = 5.0


class MapGossip:
    """The node's map gossip (see the module docstring).

    Args:
        store: the node's maps.
        node_id: this node's id (it is not its own peer).
        every: seconds between rounds.
        timeout: seconds per request to a peer.
    """

    def __init__(self, store: MapStore, node_id: str, every: float = DEFAULT_GOSSIP_SECONDS,
                 timeout: float = DEFAULT_PEER_TIMEOUT) -> None:
        self.store = store
        self.node_id = node_id
        self.every = every
        self.timeout = timeout
        self._known: dict[str, int] = {}  # peer URL -> newest epoch it is known to hold
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._push_lock = asyncio.Lock()

    def peers(self) -> list[str]:
        """URLs of the newest map's nodes that serve maps, this node excepted."""
        newest = self.store.newest
        if newest is None:
            return []
        own = {n.url for n in newest.document.nodes if n.id == self.node_id}
        return [url for url in map_urls(newest) if url not in own]

    async def start(self, app: web.Application) -> None:
        """Open the session, listen to the store, start the rounds (an ``on_startup``)."""
        self._session = aiohttp.ClientSession()
        self.store.listeners.append(self.announce)
        self._spawn(self._rounds())

    async def stop(self, app: web.Application) -> None:
        """Stop every task and close the session (an ``on_cleanup``)."""
        with contextlib.suppress(ValueError):
            self.store.listeners.remove(self.announce)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def announce(self, signed: SignedMap) -> None:
        """Offer the new newest map ``signed`` to the peers now (in the background)."""
        if self._session is not None:
            self._spawn(self.push())

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rounds(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.pull()
                await self.push()
            except Exception:  # a round must never end the loop
                log.exception("network map: gossip round failed")

    async def pull(self) -> None:
        """Take every valid newer epoch from a sample of peers, and fill in the epoch
        before the oldest held."""
        assert self._session is not None
        root = self.store.trust_root()
        if root is None:
            return
        peers = self.peers()
        urls = random.sample(peers, min(PULL_SAMPLE, len(peers)))
        if self.store.newest is None and self.store.bootstrap is not None:
            urls += self.store.bootstrap.urls
        for signed in await fetch_map_chain(root, urls, session=self._session,
                                            timeout=self.timeout):
            if not await self._offer_self(signed):
                break
        await self._fill_older(urls)

    async def _fill_older(self, urls: list[str]) -> None:
        assert self._session is not None
        for url in urls:
            oldest = self.store.oldest
            if oldest is None or oldest.epoch <= 1:
                return
            try:
                older = await get_map(self._session, url, oldest.epoch - 1,
                                      timeout=self.timeout)
            except (NodeError, MapError) as exc:
                log.info("network map: %s: epoch %d not taken: %s", url, oldest.epoch - 1, exc)
                continue
            if older is not None:
                await self._offer_self(older)

    async def _offer_self(self, signed: SignedMap) -> bool:
        try:
            await self.store.accept(signed)
            return True
        except RequestError as exc:
            log.warning("network map: epoch %d from a peer refused: %s", signed.epoch,
                        exc.message)
        except OSError as exc:
            log.error("network map: cannot store epoch %d: %s", signed.epoch, exc)
        return False

    async def push(self) -> None:
        """Offer the newest map to every peer not known to hold it (one push at a time)."""
        newest = self.store.newest
        if newest is None or self._session is None:
            return
        async with self._push_lock:
            behind = [url for url in self.peers() if self._known.get(url, 0) < newest.epoch]
            gate = asyncio.Semaphore(PUSH_CONCURRENCY)

            async def one(url: str) -> None:
                async with gate:
                    await self._push_to(url, newest.epoch)

            await asyncio.gather(*(one(url) for url in behind))

    async def _push_to(self, url: str, newest: int) -> None:
        assert self._session is not None
        try:
            theirs = await get_map(self._session, url, timeout=self.timeout)
        except (NodeError, MapError) as exc:
            log.warning("network map: peer %s: cannot read its map (retried next round): %s",
                        url, exc)
            return
        epoch = 0 if theirs is None else theirs.epoch
        for next_epoch in range(epoch + 1, newest + 1):
            signed = self.store.get(next_epoch)
            if signed is None:
                continue
            try:
                status, text = await put_map(self._session, url, signed, timeout=self.timeout)
            except NodeError as exc:
                log.warning("network map: peer %s: epoch %d not delivered (retried next "
                            "round): %s", url, next_epoch, exc)
                return
            if status not in (200, 201):
                log.warning("network map: peer %s refused epoch %d: %d %s", url, next_epoch,
                            status, text)
                return
            epoch = next_epoch
        self._known[url] = max(epoch, self._known.get(url, 0))

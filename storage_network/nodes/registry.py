"""Kinds of node, chosen by the scheme of a node's URL in the network file.

``http://`` and ``https://``: our storage node (:mod:`storage_network.nodes.http`).
``s3://BUCKET/PREFIX?endpoint=URL&region=R&profile=P``: an S3-compatible bucket
(:mod:`storage_network.nodes.s3`).

Adding a kind of node: write a module in ``nodes/`` whose class implements
:class:`~storage_network.nodes.base.NodeStore`, add one :class:`NodeKind`
to :data:`KINDS`, and add the kind to the contract suite's parameters in
``tests/storage_network/nodes/conftest.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from storage_network.nodes.base import NodeStore
from storage_network.nodes.limits import AnswerBudget, Deadlines, LoopLag
from storage_network.wire.write_auth import PublisherKey

if TYPE_CHECKING:
    from storage_network.config import NodeInfo


@dataclass(frozen=True)
class NodeContext:
    """What a client shares with every node store it opens.

    Attributes:
        session: the client's HTTP session (kinds speaking plain HTTP reuse it).
        deadlines: per-phase seconds of one request.
        slots: requests to one node at once.
        lag: the client's event-loop watcher.
        budget: bytes of answers held at once over all nodes.
        publishers: the network's publisher keys (kinds that check records on the
            client side, such as buckets, open held records with them).
    """

    session: aiohttp.ClientSession
    deadlines: Deadlines
    slots: int
    lag: LoopLag
    budget: AnswerBudget
    publishers: Mapping[str, PublisherKey] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeKind:
    """One kind of node.

    Attributes:
        schemes: the URL schemes it serves (lower case, without ``://``).
        url_error: the reason a URL of this kind is malformed, or None when it is fine.
        open: a node store for ``NodeInfo`` sharing ``NodeContext``.
    """

    schemes: tuple[str, ...]
    url_error: Callable[[str], str | None]
    open: Callable[[NodeInfo, NodeContext], NodeStore]


_HTTP_URL = re.compile(r"\Ahttps?://[^/\s]+/?\Z")


def _http_url_error(url: str) -> str | None:
    return None if _HTTP_URL.fullmatch(url) else "is not http(s)://host:port"


def _open_http(info: NodeInfo, ctx: NodeContext) -> NodeStore:
    from storage_network.nodes.http import NodeClient
    return NodeClient(info, ctx.session, deadlines=ctx.deadlines, slots=ctx.slots,
                      lag=ctx.lag, budget=ctx.budget)


def _s3_url_error(url: str) -> str | None:
    from storage_network.nodes.s3_transport import s3_url_error
    return s3_url_error(url)


def _open_s3(info: NodeInfo, ctx: NodeContext) -> NodeStore:
    from storage_network.nodes.s3 import S3NodeStore
    return S3NodeStore(info, deadlines=ctx.deadlines, slots=ctx.slots, lag=ctx.lag,
                       budget=ctx.budget, publishers=dict(ctx.publishers) or None)


KINDS: tuple[NodeKind, ...] = (
    NodeKind(("http", "https"), _http_url_error, _open_http),
    NodeKind(("s3",), _s3_url_error, _open_s3),
)
"""Every kind of node, by URL scheme."""


def kind_of(url: str) -> NodeKind | None:
    """The kind serving ``url``'s scheme, or None."""
    scheme = url.partition("://")[0].lower()
    return next((kind for kind in KINDS if scheme in kind.schemes), None)


def url_error(url: str) -> str | None:
    """Why ``url`` cannot name a node (unknown scheme or malformed for its kind), or None."""
    kind = kind_of(url)
    if kind is None:
        schemes = ", ".join(f"{s}://" for k in KINDS for s in k.schemes)
        return f"has no known scheme (one of {schemes})"
    return kind.url_error(url)


def open_node(info: NodeInfo, ctx: NodeContext) -> NodeStore:
    """The node store for ``info``, of the kind its URL's scheme names.

    Raises:
        ValueError: no kind serves the URL (the network file check refuses such URLs first).
    """
    kind = kind_of(info.url)
    if kind is None:
        raise ValueError(f"node {info.id}: url {info.url!r} {url_error(info.url)}")
    return kind.open(info, ctx)

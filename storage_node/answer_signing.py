"""The node's side of :mod:`storage_network.wire.node_answer_auth`: sign an answer.

A node started with ``--key`` (:attr:`storage_node.config.NodeConfig.identity`)
signs the answers a gateway acts on without data it can check (``has``, a
record's 404, proofs) when the request carries a nonce; a node without a key
signs nothing.
"""

from __future__ import annotations

from aiohttp import web

from storage_network.wire.node_answer_auth import sign_answer

from .appkeys import CONFIG


def answer_headers(request: web.Request, path: str, request_sha256: bytes, status: int,
                   answer: bytes) -> dict[str, str]:
    """The signature headers of an answer of ``status`` with body ``answer`` to
    ``request``; ``{}`` when the node has no key or the request no nonce.

    Args:
        path: the route path the signature names (``/shards/has``, ``/records/<key>``,
            ``/proofs``: what the client asked, without URL prefix or query).
        request_sha256: SHA-256 of the request body (32 bytes).
    """
    config = request.app[CONFIG]
    if config.identity is None:
        return {}
    return sign_answer(config.identity.signing_key, config.node_id, request.method, path,
                       request_sha256, request.headers, status, answer)

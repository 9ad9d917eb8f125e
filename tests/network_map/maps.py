"""Building network maps for tests: maintainers, node keys, epochs signed by whom a test says."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from nacl.signing import SigningKey

from nixshard.localnet import new_publisher
from storage_network.config import NodeInfo
from storage_network.network_map import MapDocument, SignedMap
from storage_network.wire.write_auth import Publisher
from storage_node.identity import NodeIdentity


def maintainers(prefix: str, count: int) -> list[Publisher]:
    """``count`` new maintainer keys named ``<prefix>-1`` ..."""
    return [new_publisher(f"{prefix}-{i}")[0] for i in range(1, count + 1)]


def node_entries(urls: Sequence[str]) -> tuple[list[NodeIdentity], tuple[NodeInfo, ...]]:
    """A new key per URL and the map's node entries for them (two operators)."""
    ids = [NodeIdentity(SigningKey.generate()) for _ in urls]
    nodes = tuple(NodeInfo(i.node_id, url, operator=f"op-{n % 2}", public_key=i.public_key)
                  for n, (i, url) in enumerate(zip(ids, urls, strict=True)))
    return ids, nodes


def first_epoch(nodes: tuple[NodeInfo, ...], keys: Sequence[Publisher], threshold: int = 2,
                k: int = 2, m: int = 1) -> MapDocument:
    """Epoch 1 over ``nodes``, maintainers ``keys``, one publisher ``pub-1`` with a quota."""
    pub = new_publisher("pub-1")[0]
    return MapDocument(epoch=1, previous="", nodes=nodes, k=k, m=m,
                       publishers=(pub.public,), quotas={pub.name: 10**9},
                       maintainers=tuple(key.public for key in keys), threshold=threshold,
                       record_replicas=min(3, len(nodes))).validate()


def next_epoch(signed: SignedMap, **changes: Any) -> MapDocument:
    """The epoch after ``signed`` with ``changes`` to its fields."""
    doc = signed.document
    return dataclasses.replace(doc, epoch=doc.epoch + 1, previous=doc.digest(),
                               **changes).validate()


def sign(doc: MapDocument, *keys: Publisher) -> SignedMap:
    """``doc`` signed by each of ``keys``."""
    signed = SignedMap(doc)
    for key in keys:
        signed = signed.signed_by(key)
    return signed

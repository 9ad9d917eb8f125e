"""The network map document: its fields, its canonical bytes, its defensive parsing.

A map is one JSON object; every key below is required and no other key is
allowed (format ``nixshard-network-map/1``)::

    {
      "format": "nixshard-network-map/1",
      "epoch": 2,                      # 1..10^12-1; each map replaces epoch - 1
      "previous": "<64 hex>",          # SHA-256 of the canonical bytes of epoch - 1
                                       # ("" at epoch 1)
      "k": 4, "m": 2,                  # data and parity shards per chunk
      "codec": "isa_l_rs_cauchy", "zstd_level": 3,
      "chunking": {"min_size": 65536, "avg_size": 262144, "max_size": 1048576},
      "record_replicas": 3,            # nodes holding each signed record
      "gc_grace_seconds": 86400,
      "placement": "rendezvous",       # or "groups"
      "private": false,
      "publishers": [{"key": "name:BASE64", "quota_bytes": 1000000000}],
                                       # quota_bytes: bytes per node, or null (none)
      "maintainers": ["name:BASE64"],  # they sign the NEXT epoch, and may delete
      "threshold": 2,                  # signatures of maintainers the next epoch needs
      "nodes": [{"id": "node-...", "public_key": "BASE64", "url": "http://h:9001",
                 "operator": "acme", "zone": "fra1", "weight": 1.0,
                 "state": "active"}]   # state: active, draining or removed
    }

A node's ``id`` must be :func:`~storage_network.network_map.node_id.node_id_for_key`
of its ``public_key``.  Only a bucket (an ``s3://`` URL: it holds shards but
runs no code of ours) has no key (``"public_key": ""``) and any id matching
:data:`storage_network.config.NODE_ID_RE`.

**Canonical bytes** (what maintainers sign, :func:`canonical_bytes`): the
object serialised by Python's ``json.dumps`` with ``sort_keys=True``,
``separators=(",", ":")``, ``ensure_ascii=True`` and ``allow_nan=False``:
keys sorted by code point, no whitespace, non-ASCII as ``\\uXXXX``, integers
in decimal, and each ``weight`` as the shortest decimal that reads back as
the same IEEE-754 double (Python's ``repr``, always with a ``.`` or an
exponent, e.g. ``1.0``, ``2.5``, ``1e-05``).  Lists keep their order.
Parsing is lossless: :func:`parse_document` refuses a document whose
fields do not read back to the same canonical bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from storage_network.config import (
    CODECS,
    NODE_ID_RE,
    NODE_STATES,
    PLACEMENTS,
    ChunkingParams,
    Network,
    NodeInfo,
)
from storage_network.errors import AuthError, MapError, NetworkFileError
from storage_network.wire.write_auth import PublisherKey, parse_publisher_key

from .node_id import decode_node_key, node_id_for_key

FORMAT = "nixshard-network-map/1"
MAX_MAP_BYTES = 16 * 1024 * 1024
"""Largest signed map file (document and signatures) read or accepted, bytes."""
MAX_EPOCH = 10**12 - 1
"""The largest epoch (12 decimal digits, as ``GET /map/{epoch}`` takes them)."""
MAX_SIGNATURES = 256
"""Most signatures one signed map may carry."""
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
_DOC_KEYS = frozenset({
    "format", "epoch", "previous", "k", "m", "codec", "zstd_level", "chunking",
    "record_replicas", "gc_grace_seconds", "placement", "private", "publishers",
    "maintainers", "threshold", "nodes"})
_NODE_KEYS = frozenset({"id", "public_key", "url", "operator", "zone", "weight", "state"})
_CHUNKING_KEYS = frozenset({"min_size", "avg_size", "max_size"})
_PUBLISHER_KEYS = frozenset({"key", "quota_bytes"})


def canonical_bytes(doc: Mapping[str, Any]) -> bytes:
    """The canonical encoding of a JSON value (see the module docstring).

    Raises:
        MapError: the value holds a NaN or an infinity, or a non-JSON type.
    """
    try:
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise MapError(f"map document cannot be encoded: {exc}") from None


@dataclass(frozen=True)
class MapDocument:
    """One epoch of the network map (unsigned).  See the module docstring for the format.

    Attributes:
        epoch: >= 1.
        previous: hex SHA-256 of epoch - 1's canonical bytes; "" at epoch 1.
        nodes: every node, with id, key, URL, operator, zone, weight and state.
        publishers: keys that may write (in order).
        quotas: bytes per node each publisher (by key name) may keep; absent: no quota.
        maintainers: keys whose signatures make the next epoch valid (they may also
            delete: the maintainer role of :class:`~storage_network.config.Network`).
        threshold: how many distinct maintainers must sign the next epoch (1..n).
        The other attributes are those of :class:`~storage_network.config.Network`.
    """

    epoch: int
    previous: str
    nodes: tuple[NodeInfo, ...]
    k: int
    m: int
    publishers: tuple[PublisherKey, ...]
    maintainers: tuple[PublisherKey, ...]
    threshold: int
    quotas: Mapping[str, int] = field(default_factory=dict)
    codec: str = "isa_l_rs_cauchy"
    zstd_level: int = 3
    chunking: ChunkingParams = ChunkingParams()
    record_replicas: int = 3
    gc_grace_seconds: int = 86400
    placement: str = "rendezvous"
    private: bool = False

    def to_json(self) -> dict[str, Any]:
        """The document as a JSON object (the shape of the module docstring)."""
        return {
            "format": FORMAT,
            "epoch": self.epoch,
            "previous": self.previous,
            "k": self.k,
            "m": self.m,
            "codec": self.codec,
            "zstd_level": self.zstd_level,
            "chunking": {"min_size": self.chunking.min_size,
                         "avg_size": self.chunking.avg_size,
                         "max_size": self.chunking.max_size},
            "record_replicas": self.record_replicas,
            "gc_grace_seconds": self.gc_grace_seconds,
            "placement": self.placement,
            "private": self.private,
            "publishers": [{"key": key.text(), "quota_bytes": self.quotas.get(key.name)}
                           for key in self.publishers],
            "maintainers": [key.text() for key in self.maintainers],
            "threshold": self.threshold,
            "nodes": [{"id": n.id, "public_key": n.public_key, "url": n.url,
                       "operator": n.operator, "zone": n.zone, "weight": float(n.weight),
                       "state": n.state} for n in self.nodes],
        }

    def canonical(self) -> bytes:
        """The canonical bytes of :meth:`to_json` (what maintainers sign; computed once)."""
        return self._canonical

    @cached_property
    def _canonical(self) -> bytes:
        return canonical_bytes(self.to_json())

    def digest(self) -> str:
        """Hex SHA-256 of :meth:`canonical` (the next epoch's ``previous``)."""
        return self._digest

    @cached_property
    def _digest(self) -> str:
        return hashlib.sha256(self._canonical).hexdigest()

    def to_network(self) -> Network:
        """The :class:`~storage_network.config.Network` this map describes: its
        publishers and maintainers are the accepted keys, the maintainers have the
        maintainer role.

        Raises:
            MapError: the parameters do not fit (see :meth:`Network.validate`).
        """
        keys: dict[str, PublisherKey] = {}
        for key in (*self.publishers, *self.maintainers):
            known = keys.get(key.name)
            if known is not None and bytes(known.verify_key) != bytes(key.verify_key):
                raise MapError(f"key name {key.name!r} is listed twice with different keys")
            keys[key.name] = key
        try:
            return Network(
                nodes=self.nodes, k=self.k, m=self.m, publishers=keys, codec=self.codec,
                zstd_level=self.zstd_level, record_replicas=self.record_replicas,
                chunking=self.chunking, gc_grace_seconds=self.gc_grace_seconds,
                private=self.private,
                maintainers=frozenset(key.name for key in self.maintainers),
                quotas=dict(self.quotas), placement=self.placement).validate()
        except NetworkFileError as exc:
            raise MapError(f"epoch {self.epoch}: {exc}") from None

    def validate(self) -> MapDocument:
        """Check every rule of the format; return self.

        Raises:
            MapError: what is wrong, in words (epoch, previous, threshold,
                duplicate names or keys, node ids that do not derive from their
                keys, and everything :meth:`Network.validate` checks).
        """
        if not 1 <= self.epoch <= MAX_EPOCH:
            raise MapError(f"epoch must be 1..{MAX_EPOCH}, got {str(self.epoch)[:40]}")
        if self.epoch == 1 and self.previous:
            raise MapError("epoch 1 has no previous epoch: `previous` must be empty")
        if self.epoch > 1 and not _HEX64.fullmatch(self.previous):
            raise MapError(f"epoch {self.epoch}: `previous` must be 64 lower-case hex digits "
                           f"(SHA-256 of epoch {self.epoch - 1}), got {self.previous[:80]!r}")
        if not self.maintainers:
            raise MapError(f"epoch {self.epoch} lists no maintainer: nobody could sign the "
                           "next epoch")
        _unique([k.name for k in self.maintainers], "maintainer name")
        _unique([k.name for k in self.publishers], "publisher name")
        if not 1 <= self.threshold <= len(self.maintainers):
            raise MapError(f"threshold {self.threshold} must be 1..{len(self.maintainers)} "
                           f"(the number of maintainers)")
        unknown = sorted(set(self.quotas) - {k.name for k in self.publishers})
        if unknown:
            raise MapError(f"quotas name no publisher: {unknown}")
        for node in self.nodes:
            _check_node(node)
        _unique([n.public_key for n in self.nodes if n.public_key], "node public key")
        self.to_network()
        return self


def _unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise MapError(f"{what} {value[:80]!r} is listed twice")
        seen.add(value)


def _check_node(node: NodeInfo) -> None:
    """Refuse a node whose id does not derive from its key (or a keyless non-bucket)."""
    if not NODE_ID_RE.fullmatch(node.id):
        raise MapError(f"node id {node.id[:80]!r} must match {NODE_ID_RE.pattern}")
    if not node.public_key:
        if not node.url.lower().startswith("s3://"):
            raise MapError(f"node {node.id} ({node.url}) has no public_key: every node but "
                           "a bucket (s3://) needs one (`nixshard node join-request`)")
        return
    want = node_id_for_key(decode_node_key(node.public_key))
    if node.id != want:
        raise MapError(f"node id {node.id!r} does not match its public key "
                       f"(that key's id is {want!r})")


def document_from_network(network: Network, threshold: int, epoch: int = 1,
                          previous: str = "") -> MapDocument:
    """The map of ``network`` (a parsed network file) at ``epoch``: its maintainers
    sign the next epoch, ``threshold`` of them.  A maintainer with a quota is also
    listed under publishers (with the same key), to carry the quota.

    Raises:
        MapError: the network lists no ``maintainers``, or the result breaks a rule
            of :meth:`MapDocument.validate` (e.g. a node without ``public_key``).
    """
    if not network.maintainers:
        raise MapError("the network file lists no `maintainers`: a map needs maintainer "
                       "keys to sign its next epoch")
    names = network.maintainers
    maintainers = tuple(key for name, key in network.publishers.items() if name in names)
    publishers = tuple(key for name, key in network.publishers.items()
                       if name not in names or name in network.quotas)
    return MapDocument(
        epoch=epoch, previous=previous, nodes=network.nodes, k=network.k, m=network.m,
        publishers=publishers, maintainers=maintainers, threshold=threshold,
        quotas=dict(network.quotas), codec=network.codec, zstd_level=network.zstd_level,
        chunking=network.chunking, record_replicas=network.record_replicas,
        gc_grace_seconds=network.gc_grace_seconds, placement=network.placement,
        private=network.private).validate()


# -- parsing ------------------------------------------------------------------------------


def _get(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise MapError(f"{where}: missing {key!r}")
    value = doc[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        names = " or ".join(k.__name__ for k in kinds)
        raise MapError(f"{where}: {key!r} must be a {names}, got {_shape(value)}")
    return value


def _shape(value: object) -> str:
    """A short description of a hostile value (never the whole of it)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{type(value).__name__} {text[:60]}..."


def _exact_keys(doc: object, keys: frozenset[str], where: str) -> Mapping[str, Any]:
    if not isinstance(doc, dict):
        raise MapError(f"{where} must be a JSON object, got {_shape(doc)}")
    missing = sorted(keys - set(doc))
    extra = sorted(set(doc) - keys)
    if missing or extra:
        raise MapError(f"{where}: missing keys {missing}, unknown keys "
                       f"{[str(k)[:40] for k in extra[:10]]}")
    return doc


def _key(text: object, where: str) -> PublisherKey:
    if not isinstance(text, str):
        raise MapError(f"{where}: a key must be a string name:base64, got {_shape(text)}")
    try:
        return parse_publisher_key(text)
    except AuthError as exc:
        raise MapError(f"{where}: {exc}") from None


def _node(entry: object, index: int) -> NodeInfo:
    where = f"nodes[{index}]"
    doc = _exact_keys(entry, _NODE_KEYS, where)
    weight = _get(doc, "weight", (int, float), where)
    if not (math.isfinite(weight) and weight > 0):
        raise MapError(f"{where}: weight must be a positive finite number, got {weight!r}")
    state = _get(doc, "state", str, where)
    if state not in NODE_STATES:
        raise MapError(f"{where}: state {state[:40]!r} is not one of {NODE_STATES}")
    return NodeInfo(id=_get(doc, "id", str, where), url=_get(doc, "url", str, where),
                    operator=_get(doc, "operator", str, where),
                    zone=_get(doc, "zone", str, where), weight=float(weight), state=state,
                    public_key=_get(doc, "public_key", str, where))


def parse_document(doc: object) -> MapDocument:
    """The :class:`MapDocument` of a parsed JSON value, checked by every rule.

    Raises:
        MapError: a missing, unknown or mistyped key, an unknown format, a value out
            of range, or a document that does not read back to its own canonical
            bytes (the message says which).
    """
    where = "map document"
    doc = _exact_keys(doc, _DOC_KEYS, where)
    if doc["format"] != FORMAT:
        raise MapError(f"{where}: format {_shape(doc['format'])} is not {FORMAT!r}")
    chunk_doc = _exact_keys(doc["chunking"], _CHUNKING_KEYS, "chunking")
    chunking = ChunkingParams(**{key: _get(chunk_doc, key, int, "chunking")
                                 for key in sorted(_CHUNKING_KEYS)})
    publishers = []
    quotas: dict[str, int] = {}
    for i, entry in enumerate(_get(doc, "publishers", list, where)):
        entry = _exact_keys(entry, _PUBLISHER_KEYS, f"publishers[{i}]")
        key = _key(entry["key"], f"publishers[{i}]")
        quota = entry["quota_bytes"]
        if quota is not None:
            if isinstance(quota, bool) or not isinstance(quota, int) or quota < 0:
                raise MapError(f"publishers[{i}]: quota_bytes must be null or a number of "
                               f"bytes >= 0, got {_shape(quota)}")
            quotas[key.name] = quota
        publishers.append(key)
    maintainers = tuple(_key(text, f"maintainers[{i}]")
                        for i, text in enumerate(_get(doc, "maintainers", list, where)))
    nodes = tuple(_node(entry, i) for i, entry in enumerate(_get(doc, "nodes", list, where)))
    codec = _get(doc, "codec", str, where)
    placement = _get(doc, "placement", str, where)
    if codec not in CODECS or placement not in PLACEMENTS:
        raise MapError(f"{where}: codec {codec[:40]!r} must be one of {CODECS}, placement "
                       f"{placement[:40]!r} one of {PLACEMENTS}")
    parsed = MapDocument(
        epoch=_get(doc, "epoch", int, where), previous=_get(doc, "previous", str, where),
        nodes=nodes, k=_get(doc, "k", int, where), m=_get(doc, "m", int, where),
        publishers=tuple(publishers), maintainers=maintainers,
        threshold=_get(doc, "threshold", int, where), quotas=quotas, codec=codec,
        zstd_level=_get(doc, "zstd_level", int, where), chunking=chunking,
        record_replicas=_get(doc, "record_replicas", int, where),
        gc_grace_seconds=_get(doc, "gc_grace_seconds", int, where), placement=placement,
        private=_get(doc, "private", bool, where)).validate()
    if parsed.canonical() != canonical_bytes(doc):
        raise MapError(f"{where}: does not read back to its own canonical bytes "
                       "(a key or URL written in a non-canonical form)")
    return parsed

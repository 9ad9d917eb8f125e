"""The network file: one TOML file that push, serve and the nodes share.

Example (every key shown; ``nixshard network init`` writes it)::

    k = 4                       # data shards per chunk
    m = 2                       # parity shards per chunk; any k of k+m rebuild it
    codec = "isa_l_rs_cauchy"   # pyeclib backend
    zstd_level = 3              # compression level of each chunk's zstd frame
    record_replicas = 3         # nodes that hold each signed record
    gc_grace_seconds = 86400    # a push must write its record within half of this
                                # after touching its first shard; `nixshard gc`
                                # keeps unreferenced shards this recent by default
    publishers = ["cache.example-1:BASE64..."]  # ed25519 public keys, name:base64
    maintainers = ["ops.example-1:BASE64..."]   # keys that may also delete (gc, repair);
                                # absent: every publisher may delete (docs/keys.md)
    private = false             # true: a private cache; publishers and gateways then
                                # need the cache secret and nodes hold only ciphertext
                                # (docs/private-caches.md)

    [chunking]                  # FastCDC sizes of the uncompressed payload, bytes
    min_size = 65536
    avg_size = 262144
    max_size = 1048576

    [[nodes]]
    id = "node-1"
    url = "http://127.0.0.1:9001"

Erasure and chunking parameters are also recorded in every manifest, so a
reader never depends on this file to decode what was written under other
settings.

Key roles (docs/keys.md): a key under ``publishers`` may write shards and
records; a key under ``maintainers`` may do that and also delete (``DELETE``
of shards and records, tombstones), which is what ``nixshard gc`` and
``nixshard repair`` sign with.  A maintainer key is accepted wherever a
publisher key is (listing it under both changes nothing).  A file without
``maintainers`` lets every publisher delete, as before roles existed
(:meth:`Network.roles_note` says so).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from storage_network.errors import AuthError, NetworkFileError
from storage_network.nodes.registry import url_error
from storage_network.wire.write_auth import PublisherKey, parse_publisher_key, with_roles

if TYPE_CHECKING:
    from storage_network.network_map.signatures import SignedMap

NODE_ID_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
CODECS = ("isa_l_rs_cauchy", "liberasurecode_rs_vand", "isa_l_rs_vand")
PLACEMENTS = ("rendezvous", "groups")
"""How shards are placed (:mod:`storage_network.nodes.placement`): ``rendezvous``
hashes every node per chunk (the scheme of every file that names none);
``groups`` is what ``nixshard network init`` writes."""


NODE_STATES = ("active", "draining", "removed")
"""A node's state: ``active`` takes new shards; ``draining`` is still read but gets no
new shards (repair moves its shards away); ``removed`` is neither read nor written."""


@dataclass(frozen=True)
class NodeInfo:
    """One storage node.

    Attributes:
        id: stable id (placement ranks ids).
        url: base URL.
        operator: the party running the node (a failure domain: placement spreads a
            stripe's shards over operators first); empty means the node is its own
            operator.
        zone: a second failure domain inside an operator (site, rack); may be empty.
        weight: capacity weight (> 0); rendezvous gives a node keys in proportion.
        state: one of :data:`NODE_STATES`.
        public_key: the node's ed25519 public key, base64 (32 bytes), from the
            network map; empty for a node of a network file that names no key.
    """

    id: str
    url: str
    operator: str = ""
    zone: str = ""
    weight: float = 1.0
    state: str = "active"
    public_key: str = ""

    @property
    def domain(self) -> str:
        """The operator, or the node id when the node names none."""
        return self.operator or self.id


@dataclass(frozen=True)
class ChunkingParams:
    """FastCDC chunk sizes in bytes (of the uncompressed payload)."""

    min_size: int = 64 * 1024
    avg_size: int = 256 * 1024
    max_size: int = 1024 * 1024


@dataclass(frozen=True)
class MapFollow:
    """Where a network read from a network map came from, so that a client of it
    follows newer epochs (:meth:`storage_network.client.NetworkClient.adopt`).

    Attributes:
        trusted: the newest verified map when the program started.
        every: seconds between two asks for a newer epoch.
    """

    trusted: SignedMap
    every: float = 300.0


LEGACY_ROLES_NOTE = (
    "the network file lists no `maintainers`: every publisher key may delete shards and "
    "records (gc, repair); list maintainer keys to keep deletes to them (docs/keys.md)")
"""What :meth:`Network.roles_note` says about a file without ``maintainers``."""


@dataclass(frozen=True)
class Network:
    """A parsed network file.  See the module docstring for the format.

    Attributes:
        publishers: every key whose signatures the network accepts, by name: the
            file's ``publishers`` and ``maintainers``.  Each key's
            :attr:`~storage_network.wire.write_auth.PublisherKey.may_delete` is
            its role (set from ``maintainers`` when the network is made).
        maintainers: the names of the keys with the maintainer role (each one a
            key of ``publishers``), or None when the file lists no
            ``maintainers``: then every publisher may delete.
        quotas: bytes of shards and records each publisher (by key name) may keep on
            one node; a publisher not listed has no quota (``[quotas]`` table).
        placement: one of :data:`PLACEMENTS`.
        follow: for a network read from a network map: where from, so that clients
            follow newer epochs (None for a network file).
    """

    nodes: tuple[NodeInfo, ...]
    k: int
    m: int
    publishers: dict[str, PublisherKey] = field(default_factory=dict)
    codec: str = "isa_l_rs_cauchy"
    zstd_level: int = 3
    record_replicas: int = 3
    chunking: ChunkingParams = ChunkingParams()
    gc_grace_seconds: int = 86400
    private: bool = False
    maintainers: frozenset[str] | None = None
    quotas: dict[str, int] = field(default_factory=dict)
    placement: str = "rendezvous"
    follow: MapFollow | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # the role travels with each key (nodes, buckets and readers get the keys only)
        if self.maintainers is not None:
            object.__setattr__(self, "maintainers", frozenset(self.maintainers))
        object.__setattr__(self, "publishers", with_roles(self.publishers, self.maintainers))

    @property
    def n(self) -> int:
        """Shards per chunk, k + m."""
        return self.k + self.m

    def may_delete(self, name: str) -> bool:
        """True when the key called ``name`` is accepted and has the maintainer role."""
        key = self.publishers.get(name)
        return key is not None and key.may_delete

    def roles_note(self) -> str | None:
        """:data:`LEGACY_ROLES_NOTE` when the file lists no ``maintainers`` (every
        publisher may delete), else None: for ``nixshard status`` and the node log."""
        return LEGACY_ROLES_NOTE if self.maintainers is None else None

    def node(self, node_id: str) -> NodeInfo:
        """The node with ``node_id``; raises KeyError when absent."""
        for info in self.nodes:
            if info.id == node_id:
                return info
        raise KeyError(node_id)

    def validate(self) -> Network:
        """Check the parameters fit together; return self.

        Raises:
            NetworkFileError: what is inconsistent, in words.
        """
        if not self.nodes:
            raise NetworkFileError("network has no nodes")
        ids = [n.id for n in self.nodes]
        if len(set(ids)) != len(ids):
            raise NetworkFileError(f"duplicate node ids in {ids}")
        for info in self.nodes:
            if not NODE_ID_RE.fullmatch(info.id):
                raise NetworkFileError(f"node id {info.id!r} must match {NODE_ID_RE.pattern}")
            why = url_error(info.url)
            if why is not None:
                raise NetworkFileError(f"node {info.id}: url {info.url!r} {why}")
        if self.k < 1 or self.m < 0:
            raise NetworkFileError(f"need k >= 1 and m >= 0, got k={self.k} m={self.m}")
        active = sum(1 for node in self.nodes if node.state == "active")
        if self.n > active:
            inactive = len(self.nodes) - active
            raise NetworkFileError(
                f"k + m = {self.n} shards need {self.n} distinct nodes, the file lists "
                f"{active}" + (f" active ({inactive} draining or removed)" if inactive else ""))
        if self.n > 256:
            raise NetworkFileError(f"k + m = {self.n} exceeds 256")
        if self.placement not in PLACEMENTS:
            raise NetworkFileError(f"placement {self.placement!r} is not one of {PLACEMENTS}")
        if self.codec not in CODECS:
            raise NetworkFileError(f"codec {self.codec!r} is not one of {CODECS}")
        if not 1 <= self.record_replicas <= len(self.nodes):
            raise NetworkFileError(
                f"record_replicas = {self.record_replicas} must be 1..{len(self.nodes)}")
        c = self.chunking
        if not 256 <= c.min_size <= c.avg_size <= c.max_size <= 64 * 1024 * 1024:
            raise NetworkFileError(
                "chunking needs 256 <= min_size <= avg_size <= max_size <= 64 MiB, got "
                f"{c.min_size}/{c.avg_size}/{c.max_size}")
        if not 1 <= self.zstd_level <= 22:
            raise NetworkFileError(f"zstd_level {self.zstd_level} must be 1..22")
        if self.gc_grace_seconds < 2:
            raise NetworkFileError(
                f"gc_grace_seconds = {self.gc_grace_seconds} must be at least 2 (seconds)")
        unknown_quota = sorted(set(self.quotas) - set(self.publishers))
        if unknown_quota:
            raise NetworkFileError(f"quotas {unknown_quota} name no key among the accepted "
                                   f"keys {sorted(self.publishers)}")
        if self.maintainers is not None:
            if not self.maintainers:
                raise NetworkFileError(
                    "maintainers = [] lists no key, so nothing could ever be deleted (gc, "
                    "repair); list a maintainer key, or drop `maintainers` to let every "
                    "publisher delete")
            unknown = sorted(self.maintainers - set(self.publishers))
            if unknown:
                raise NetworkFileError(f"maintainers {unknown} have no key among the "
                                       f"accepted keys {sorted(self.publishers)}")
        return self

    def to_toml(self) -> dict[str, Any]:
        """The TOML document (as a dict) that :func:`load_network` reads back
        (``private`` only when true; ``maintainers`` only when listed, and a
        maintainer key only there, not under ``publishers`` too)."""
        roles = self.maintainers or frozenset()
        doc: dict[str, Any] = {
            "k": self.k,
            "m": self.m,
            "codec": self.codec,
            "zstd_level": self.zstd_level,
            "record_replicas": self.record_replicas,
            "gc_grace_seconds": self.gc_grace_seconds,
            "publishers": [key.text() for name, key in self.publishers.items()
                           if name not in roles],
            "chunking": {
                "min_size": self.chunking.min_size,
                "avg_size": self.chunking.avg_size,
                "max_size": self.chunking.max_size,
            },
            "nodes": [_node_toml(n) for n in self.nodes],
        }
        if self.maintainers is not None:
            doc["maintainers"] = [key.text() for name, key in self.publishers.items()
                                  if name in roles]
        if self.private:
            doc["private"] = True
        if self.quotas:
            doc["quotas"] = dict(self.quotas)
        if self.placement != "rendezvous":
            doc["placement"] = self.placement
        return doc


def _node_toml(node: NodeInfo) -> dict[str, Any]:
    """One ``[[nodes]]`` table; the failure-domain keys only when not their defaults."""
    doc: dict[str, Any] = {"id": node.id, "url": node.url}
    if node.operator:
        doc["operator"] = node.operator
    if node.zone:
        doc["zone"] = node.zone
    if node.weight != 1.0:
        doc["weight"] = node.weight
    if node.state != "active":
        doc["state"] = node.state
    if node.public_key:
        doc["public_key"] = node.public_key
    return doc


def _parse_node(entry: dict[str, Any]) -> NodeInfo:
    weight = entry.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
            0 < weight < float("inf")):
        raise NetworkFileError(f"node weight must be a positive number, got {weight!r}")
    state = _get(entry, "state", str, "active")
    if state not in NODE_STATES:
        raise NetworkFileError(f"node state {state!r} is not one of {NODE_STATES}")
    return NodeInfo(id=str(_get(entry, "id", str, "")),
                    url=str(_get(entry, "url", str, "")).rstrip("/"),
                    operator=_get(entry, "operator", str, ""),
                    zone=_get(entry, "zone", str, ""),
                    weight=float(weight), state=state,
                    public_key=_get(entry, "public_key", str, ""))


def _parse_quotas(doc: dict[str, Any]) -> dict[str, int]:
    quotas = {}
    for name, value in doc.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise NetworkFileError(f"quotas.{name} must be a number of bytes >= 0, "
                                   f"got {value!r}")
        quotas[name] = value
    return quotas


def default_record_replicas(nodes: int, m: int) -> int:
    """Records live on max(3, m + 1) nodes (at most all): they survive what chunks survive."""
    return max(1, min(nodes, max(3, m + 1)))


def _get(doc: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = doc.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise NetworkFileError(f"{key!r} must be a {kind.__name__}, got {value!r}")
    return value


def parse_network(doc: dict[str, Any]) -> Network:
    """Build a :class:`Network` from a parsed TOML document.

    Raises:
        NetworkFileError: missing or mistyped keys, bad publisher keys, or
            parameters that do not fit (see :meth:`Network.validate`).
    """
    nodes_doc = _get(doc, "nodes", list, [])
    nodes = []
    for entry in nodes_doc:
        if not isinstance(entry, dict):
            raise NetworkFileError(f"each [[nodes]] entry must be a table, got {entry!r}")
        nodes.append(_parse_node(entry))
    publishers: dict[str, PublisherKey] = {}
    _parse_keys(publishers, _get(doc, "publishers", list, []), "publishers")
    maintainers = None
    if "maintainers" in doc:
        maintainers = frozenset(_parse_keys(publishers, _get(doc, "maintainers", list, []),
                                            "maintainers"))
    chunk_doc = _get(doc, "chunking", dict, {})
    defaults = ChunkingParams()
    chunking = ChunkingParams(
        min_size=_get(chunk_doc, "min_size", int, defaults.min_size),
        avg_size=_get(chunk_doc, "avg_size", int, defaults.avg_size),
        max_size=_get(chunk_doc, "max_size", int, defaults.max_size),
    )
    if "k" not in doc or "m" not in doc:
        raise NetworkFileError("the network file must set k and m")
    return Network(
        nodes=tuple(nodes),
        k=_get(doc, "k", int, 0),
        m=_get(doc, "m", int, 0),
        publishers=publishers,
        codec=_get(doc, "codec", str, "isa_l_rs_cauchy"),
        zstd_level=_get(doc, "zstd_level", int, 3),
        record_replicas=_get(doc, "record_replicas", int,
                             default_record_replicas(len(nodes), _get(doc, "m", int, 0))),
        chunking=chunking,
        gc_grace_seconds=_get(doc, "gc_grace_seconds", int, 86400),
        private=_get(doc, "private", bool, False),
        maintainers=maintainers,
        quotas=_parse_quotas(_get(doc, "quotas", dict, {})),
        placement=_get(doc, "placement", str, "rendezvous"),
    ).validate()


def _parse_keys(keys: dict[str, PublisherKey], texts: list[Any], entry: str) -> list[str]:
    """Parse the ``name:base64`` public keys of list ``entry`` into ``keys``; returns
    their names.  A name already in ``keys`` must carry the same key."""
    names = []
    for text in texts:
        if not isinstance(text, str):
            raise NetworkFileError(f"{entry}: each key must be a string name:base64, "
                                   f"got {text!r}")
        try:
            key = parse_publisher_key(text)
        except AuthError as exc:
            raise NetworkFileError(f"{entry}: {exc}") from exc
        known = keys.get(key.name)
        if known is not None and bytes(known.verify_key) != bytes(key.verify_key):
            raise NetworkFileError(f"{entry}: key name {key.name!r} is listed twice with "
                                   "different keys")
        keys[key.name] = key
        names.append(key.name)
    return names


def load_network(path: str | Path) -> Network:
    """Read and validate the network file at ``path``.

    Raises:
        NetworkFileError: unreadable file, invalid TOML, or invalid content
            (the message names the file).
    """
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise NetworkFileError(f"cannot read network file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NetworkFileError(f"network file {path} is not valid TOML (UTF-8): {exc}") from exc
    try:
        return parse_network(doc)
    except NetworkFileError as exc:
        raise NetworkFileError(f"network file {path}: {exc}") from exc


def init_network(node_urls: Iterable[str], k: int, m: int,
                 publishers: Iterable[PublisherKey] = (), **params: Any) -> Network:
    """A validated :class:`Network` over ``node_urls`` (ids ``node-1`` ...).

    Args:
        publishers: keys that may write.
        params: ``maintainers`` (keys that may write and delete; None, the
            default: no ``maintainers`` entry, every publisher may delete),
            ``codec``, ``zstd_level``, ``record_replicas``, ``chunking``,
            ``gc_grace_seconds`` or ``private``.

    Raises:
        NetworkFileError: like :meth:`Network.validate`, and for one name given
            two different keys.
    """
    nodes = tuple(NodeInfo(f"node-{i}", url.rstrip("/")) for i, url in enumerate(node_urls, 1))
    params.setdefault("record_replicas", default_record_replicas(len(nodes), m))
    maintainers: Iterable[PublisherKey] | None = params.pop("maintainers", None)
    keys: dict[str, PublisherKey] = {}
    _parse_keys(keys, [p.text() for p in publishers], "publishers")
    names = None
    if maintainers is not None:
        names = frozenset(_parse_keys(keys, [p.text() for p in maintainers], "maintainers"))
    return Network(nodes=nodes, k=k, m=m, publishers=keys, maintainers=names,
                   **params).validate()


def write_network(network: Network, path: str | Path) -> None:
    """Write ``network`` as TOML to ``path`` (replacing it atomically: a temporary
    file of its own in the same directory, fsync'd, then renamed over ``path``;
    mode 0644: every node, publisher and gateway reads it, and it holds no secret)."""
    text = ("# nixshard network file (see README: The network file)\n"
            + tomli_w.dumps(network.to_toml()))
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o644)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


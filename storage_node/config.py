"""The node's configuration, built by the CLI (the only place config is read)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from storage_network.config import NODE_ID_RE
from storage_network.network_map import Bootstrap, SignedMap
from storage_network.wire.write_auth import PublisherKey, with_roles

from .errors import ConfigError
from .faults import Faults
from .identity import NodeIdentity

MiB = 1024 * 1024
DEFAULT_MAX_SHARD_BYTES = 64 * MiB
DEFAULT_MAX_RECORD_BYTES = 64 * MiB
DEFAULT_MAX_BODY_BYTES_IN_FLIGHT = 64 * MiB
DEFAULT_BODY_STALL_SECONDS = 10.0
DEFAULT_BODY_WAIT_SECONDS = 5.0
DEFAULT_GOSSIP_SECONDS = 60.0


@dataclass
class NodeConfig:
    """Everything a node needs to run.

    Attributes:
        data_dir: the directory holding ``shards/``, ``records/`` and ``tmp/``
            (created if missing).
        node_id: the id this node has in the network file (reported by ``/healthz``).
        publishers: accepted keys by name (publishers and maintainers); writes
            signed by any other key are refused, and so are records signed by
            any other key.  Their roles are set from ``maintainers`` when the
            config is made.
        max_shard_bytes: largest shard body accepted, in bytes.
        max_record_bytes: largest record body accepted, in bytes.
        max_body_bytes_in_flight: request-body bytes read and held at once,
            node-wide (see :mod:`storage_node.budget`).
        body_stall_seconds: longest pause, in seconds, between two pieces
            of a request body; a body that stalls longer is refused (408).
        body_wait_seconds: how long a request waits for room in the body
            budget before it is refused (503).
        faults: TEST-ONLY misbehaviour (see :mod:`storage_node.faults`);
            none by default.
        maintainers: names of the keys (of ``publishers``) that may delete:
            ``DELETE`` shards and records, and store tombstones they signed.
            None: every accepted key may (a network file without
            ``maintainers``, as before roles existed).
        quotas: publisher key name -> bytes of shards and records it may keep on
            this node (the network file's ``[quotas]``, see :mod:`storage_node.usage`);
            a name not listed has no quota.
        network_map: the signed map given with ``--map`` (trusted as it is when the
            node holds none yet; :mod:`storage_node.map_store`), or None.
        bootstrap: the bootstrap file given with ``--bootstrap`` (checks epoch 1), or None.
        keys_from_map: the publisher keys, roles and quotas come from the network map
            (no ``--network``): each newer epoch the node takes replaces them
            (:mod:`storage_node.map_follow`).
        gossip_seconds: seconds between two map gossip rounds
            (:mod:`storage_node.map_gossip`).
        identity: the node's key (``--key``), or None; with it the node signs the
            answers of :mod:`storage_network.wire.node_answer_auth`, and ``node_id``
            must be its id.
    """

    data_dir: Path
    node_id: str
    publishers: dict[str, PublisherKey]
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_body_bytes_in_flight: int = DEFAULT_MAX_BODY_BYTES_IN_FLIGHT
    body_stall_seconds: float = DEFAULT_BODY_STALL_SECONDS
    body_wait_seconds: float = DEFAULT_BODY_WAIT_SECONDS
    faults: Faults = field(default_factory=Faults)
    maintainers: frozenset[str] | None = None
    quotas: dict[str, int] = field(default_factory=dict)
    network_map: SignedMap | None = None
    bootstrap: Bootstrap | None = None
    keys_from_map: bool = False
    gossip_seconds: float = DEFAULT_GOSSIP_SECONDS
    identity: NodeIdentity | None = None

    def __post_init__(self) -> None:
        if self.maintainers is not None:
            self.maintainers = frozenset(self.maintainers)
        self.publishers = with_roles(self.publishers, self.maintainers)

    def validate(self) -> NodeConfig:
        """Check the configuration; return self.

        Raises:
            ConfigError: no publisher key, a maintainer name without a key, a
                node id that does not match
                :data:`storage_network.config.NODE_ID_RE` (or is not the id of
                ``identity``), a non-positive size limit, or a non-positive or infinite
                number of seconds.
        """
        if not self.publishers:
            raise ConfigError(
                "no publisher key: a node accepts writes only from listed publishers; "
                "pass --accept-publisher NAME:BASE64 or a --network file with publishers")
        unknown = sorted((self.maintainers or frozenset()) - set(self.publishers))
        if unknown:
            raise ConfigError(f"maintainers {unknown} are not among the accepted keys "
                              f"{sorted(self.publishers)}")
        if not NODE_ID_RE.fullmatch(self.node_id):
            raise ConfigError(f"node id {self.node_id!r} must match {NODE_ID_RE.pattern}")
        if self.identity is not None and self.identity.node_id != self.node_id:
            raise ConfigError(f"node id {self.node_id!r} is not the id of the node's key "
                              f"({self.identity.node_id!r})")
        for name in ("max_shard_bytes", "max_record_bytes", "max_body_bytes_in_flight"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 byte, got {getattr(self, name)}")
        for name in ("body_stall_seconds", "body_wait_seconds", "gossip_seconds"):
            seconds = getattr(self, name)
            if not (math.isfinite(seconds) and seconds > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {seconds}")
        return self

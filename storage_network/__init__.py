"""The shard network seen from a client, Nix-agnostic.

Nothing here knows about Nix: a payload is an opaque byte stream (a NAR, to
the callers in ``uploader`` and ``cache_server``), a record is a signed
manifest plus opaque metadata.  The package is grouped by role:

``config``      the network file (nodes, k, m, chunking, publishers)
``errors``      the exception tree (:class:`StorageNetworkError` at its root)
``wire/``       what travels between clients and nodes (manifests, records, sealed
                record metadata, stripes, shard batch frames, proofs, write
                authorization, listing rows)
``coding/``     chunker, compression, the erasure code, and the sealing of a
                private cache (cache secrets, keyed ids, AES-256-GCM)
``nodes/``      the NodeStore protocol and its kinds (our HTTP node, S3 buckets),
                the registry by URL scheme, node health, audit scores, placement
``read/``       record lookup, locating shards, the hedged and verified fetch
``write/``      storing payloads around missing nodes, publishing records
``upkeep/``     record scan and table, audit, repair, gc, durability, membership

The names below are the public surface used by the other packages.
"""

from storage_network import errors
from storage_network.client import DEFAULT_HEDGE_AFTER, NetworkClient
from storage_network.coding.sealing import CacheSecret, Keyring
from storage_network.config import Network, load_network
from storage_network.errors import (
    CacheSecretError,
    ChunkUnavailableError,
    NetworkFileError,
    NodeError,
    NotFoundError,
    RecordConflictError,
    SealError,
    StorageNetworkError,
)
from storage_network.nodes.base import NodeStore
from storage_network.read.plan import FetchPlan, plan_fetch
from storage_network.read.record_lookup import fetch_record
from storage_network.read.stream import plan_stream, stream_payload
from storage_network.wire.manifest import Manifest
from storage_network.wire.record import Record
from storage_network.wire.write_auth import Publisher, PublisherKey, parse_publisher_key
from storage_network.write.publish import PublishStats, publish_record, store_payload

__all__ = [
    "DEFAULT_HEDGE_AFTER",
    "CacheSecret",
    "CacheSecretError",
    "ChunkUnavailableError",
    "FetchPlan",
    "Keyring",
    "Manifest",
    "Network",
    "NetworkClient",
    "NetworkFileError",
    "NodeError",
    "NodeStore",
    "NotFoundError",
    "Publisher",
    "PublisherKey",
    "PublishStats",
    "Record",
    "RecordConflictError",
    "SealError",
    "StorageNetworkError",
    "errors",
    "fetch_record",
    "load_network",
    "parse_publisher_key",
    "plan_fetch",
    "plan_stream",
    "publish_record",
    "store_payload",
    "stream_payload",
]

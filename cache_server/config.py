"""Configuration of ``nixshard serve`` (built at the entry point only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nix_formats.keys import PublicKey, SecretKey
from storage_network import DEFAULT_HEDGE_AFTER, Keyring, Network, Publisher
from storage_network.nodes.scores import Scores

if TYPE_CHECKING:  # annotations only: the configuration imports none of the server's code
    from .credentials import Credential
    from .upstream_auth import UpstreamAuth

DEFAULT_CACHE_MAX_BYTES = 10 * 1000**3
DEFAULT_CACHE_MIN_FREE_BYTES = 256 * 1024**2
DEFAULT_MAX_UPLOAD_BYTES = 64 * 1024**3


@dataclass(frozen=True)
class UploadConfig:
    """Who may write through the gateway, and how uploads are signed.

    Writers authenticate with :attr:`ServeConfig.credentials`.
    ``publisher`` signs the network records (it must be listed in the
    network file); ``nix_key`` is the same key in Nix form, used to add a
    ``Sig:`` when ``sign_uploads`` is set and an upload carries no
    signature by a ``trusted_keys`` key.  ``max_bytes``: largest accepted
    upload body, in bytes.
    """

    publisher: Publisher
    nix_key: SecretKey
    trusted_keys: tuple[PublicKey, ...] = ()
    sign_uploads: bool = False
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES


@dataclass(frozen=True)
class UpstreamConfig:
    """Upstream caches asked on a miss, in order, and the keys their narinfos must carry.

    ``ingest`` copies a path served from an upstream into the network
    (signed records by ``publisher``; None disables ingest).  ``timeout``:
    seconds per upstream request; ``max_bytes``: largest NAR file an ingest
    downloads, in bytes (also capped by the narinfo, see
    :mod:`cache_server.upstream_ingest`).  ``auth``: the ``Authorization``
    each upstream host gets (from ``--upstream-netrc`` and
    ``--upstream-token-file``; None: none).
    """

    urls: tuple[str, ...]
    keys: tuple[PublicKey, ...]
    ingest: bool = False
    publisher: Publisher | None = None
    timeout: float = 10.0
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    auth: UpstreamAuth | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the cache daemon.

    ``priority`` is the ``Priority:`` of nix-cache-info (lower wins;
    cache.nixos.org is 40).  ``node_timeout`` is seconds one node request may
    take, counted from when it is sent (not while it waits inside the gateway
    for one of the node's slots): connecting (at most 5 s), the first byte,
    each pause in the answer and the whole exchange must each fit in it
    (:meth:`storage_network.nodes.http.Deadlines.within`);
    ``prefetch`` chunks are fetched ahead of the one being sent;
    ``record_cache`` opened records are kept in memory, and an absent record
    is remembered for ``negative_ttl`` seconds.  ``scores`` are the
    nodes' audit scores (loaded by the CLI; None: every node counts as 1.0),
    which order reads among nodes in good standing.  ``hedge_after`` is
    seconds a chunk waits for its first k shards before one more node is
    asked (see :mod:`storage_network.read.chunk_fetch`).

    ``cache_dir`` holds the local disk cache of rebuilt NARs (``nar/``, at
    most ``cache_max_bytes`` bytes, least recently used evicted; 0 keeps
    none; a NAR is cached only while its filesystem keeps
    ``cache_min_free_bytes`` free, see :mod:`cache_server.nar_cache`), NAR
    listings (``ls/``) and staged uploads (``uploads/``).  ``credentials``: user ->
    scoped credential for HTTP basic auth (:mod:`cache_server.credentials`; Nix sends
    them from the user's netrc file); writes need one with the write scope,
    and reads one with the read scope when ``read_auth`` is set.
    ``uploads`` None: every write is refused (403).  ``upstream`` None: a miss is a miss.
    ``keyring``: the cache secrets of a private network (None for a public one):
    records are looked up under keyed keys and opened, and what the gateway
    writes is sealed (docs/private-caches.md).
    """

    network: Network
    cache_dir: Path
    priority: int = 30
    node_timeout: float = 10.0
    prefetch: int = 64
    record_cache: int = 4096
    negative_ttl: float = 1.0
    scores: Scores | None = None
    hedge_after: float = DEFAULT_HEDGE_AFTER
    cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES
    cache_min_free_bytes: int = DEFAULT_CACHE_MIN_FREE_BYTES
    read_auth: bool = False
    uploads: UploadConfig | None = None
    upstream: UpstreamConfig | None = None
    credentials: dict[str, Credential] = field(default_factory=dict, repr=False)
    keyring: Keyring | None = None

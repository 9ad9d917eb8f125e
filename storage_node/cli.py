"""``nixshard node``: run a storage node (also ``python -m storage_node``).

This is the only place the node's configuration is read: command-line
options and, with ``--network``, the publisher and maintainer keys of the
network file.  With ``--tls-cert`` and ``--tls-key`` the node serves HTTPS
(:mod:`http_serving.tls`).  With ``--map`` / ``--bootstrap`` it keeps, serves and
passes on the network map (docs/network-map.md); with ``--key`` its node id derives
from its ed25519 key (:mod:`storage_node.identity`).
"""

from __future__ import annotations

import logging
import math
import os
import socket
from pathlib import Path

import click
from aiohttp import web

from http_serving.access_log import AccessLogger, buffered_logger, flush_logger
from http_serving.addresses import parse_host_port
from http_serving.server import run_app
from http_serving.tls import certificate_summary
from http_serving.tls_options import tls_context_or_exit, tls_options
from storage_network.config import Network, load_network
from storage_network.errors import AuthError, MapError, NetworkFileError
from storage_network.network_map import Bootstrap, SignedMap, load_bootstrap, load_signed_map
from storage_network.wire.write_auth import PublisherKey, parse_publisher_key

from .app import create_app
from .appkeys import STORE
from .config import (
    DEFAULT_BODY_STALL_SECONDS,
    DEFAULT_BODY_WAIT_SECONDS,
    DEFAULT_GOSSIP_SECONDS,
    DEFAULT_MAX_BODY_BYTES_IN_FLIGHT,
    DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_MAX_SHARD_BYTES,
    NodeConfig,
)
from .errors import StorageNodeError
from .faults import ENV_VAR, Faults, FaultSpecError, faults_allowed, parse_faults
from .identity import IdentityError, NodeIdentity, load_identity

log = logging.getLogger("nixshard.node")
ACCESS_LOGGER = "nixshard.node.access"
"""One line per answered request (:mod:`http_serving.access_log`)."""


def parse_listen(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6addr]:PORT`` for IPv6) into host and port.

    Raises:
        click.BadParameter: no port, or a port outside 0-65535.
    """
    try:
        return parse_host_port(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from exc


def _add_key(publishers: dict[str, PublisherKey], key: PublisherKey, source: str) -> None:
    known = publishers.get(key.name)
    if known is not None and bytes(known.verify_key) != bytes(key.verify_key):
        raise click.UsageError(
            f"publisher name {key.name!r} is given twice with different keys ({source})")
    publishers[key.name] = key


def _parse_option_key(text: str, option: str) -> PublisherKey:
    try:
        return parse_publisher_key(text)
    except AuthError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc


def gather_publishers(network: Network | None, accepted: tuple[str, ...],
                      maintainers: tuple[str, ...] = ()) -> dict[str, PublisherKey]:
    """Every accepted key: the network file's publishers and maintainers, each
    ``--accept-publisher`` and each ``--accept-maintainer`` key (a maintainer may write).

    Raises:
        click.BadParameter: a malformed key.
        click.UsageError: two different keys under one name, or no key at all.
    """
    publishers: dict[str, PublisherKey] = {}
    if network is not None:
        for key in network.publishers.values():
            _add_key(publishers, key, "network file")
    for option, texts in (("--accept-publisher", accepted),
                          ("--accept-maintainer", maintainers)):
        for text in texts:
            _add_key(publishers, _parse_option_key(text, option), option)
    if not publishers:
        raise click.UsageError(
            "no publisher key given: a node accepts writes only from publishers it lists. "
            "Pass --accept-publisher NAME:BASE64 (a public key), or --network FILE whose "
            "`publishers` lists some.")
    return publishers


def gather_maintainers(network: Network | None,
                       accepted: tuple[str, ...]) -> frozenset[str] | None:
    """The names of the keys that may delete: the network file's ``maintainers`` plus
    each ``--accept-maintainer`` key.

    Returns:
        None when neither lists one (every accepted key may delete, as before roles).

    Raises:
        click.BadParameter: a malformed key.
    """
    names = None if network is None or network.maintainers is None else set(network.maintainers)
    for text in accepted:
        names = (names or set()) | {_parse_option_key(text, "--accept-maintainer").name}
    return None if names is None else frozenset(names)


def check_node_id(node_id: str, network: Network | None, network_path: Path | None,
                  given: bool) -> None:
    """Refuse a node id the network file does not list: every signed write names the
    node it is meant for, so such a node would refuse every write.

    Raises:
        click.UsageError: ``network`` is given and does not list ``node_id``.
    """
    if network is None:
        return
    listed = sorted(n.id for n in network.nodes)
    if node_id in listed:
        return
    source = "--node-id" if given else "the default node id (the short host name)"
    shown = ", ".join(listed[:20]) + (", ..." if len(listed) > 20 else "")
    raise click.UsageError(
        f"{source} {node_id!r} is not a node of {network_path} (its nodes: {shown}); "
        f"writes are signed for one node id, so this node would refuse every write. "
        f"Pass --node-id with this node's id in the network file.")


def gather_faults(specs: tuple[str, ...]) -> Faults:
    """The TEST-ONLY fault modes of ``--fault`` (see :mod:`storage_node.faults`).

    Raises:
        click.UsageError: ``--fault`` given while the environment lacks
            ``NIXSHARD_TEST_FAULTS=1``.
        click.BadParameter: a malformed fault spec.
    """
    if not specs:
        return Faults()
    if not faults_allowed(os.environ):
        raise click.UsageError(
            f"--fault makes this node misbehave on purpose and is for tests only; "
            f"it is refused unless the environment has {ENV_VAR}=1")
    try:
        return parse_faults(specs)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from exc


def _not_nan(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if math.isnan(value):
        raise click.BadParameter("not a number of seconds")
    return value


@click.command("node")
@click.option("--data", "data_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Data directory (shards/, records/, tmp/); created if missing.")
@click.option("--listen", default="127.0.0.1:9001", show_default=True, metavar="HOST:PORT",
              help="HOST:PORT to serve HTTP on (HTTPS with --tls-cert).")
@click.option("--network", "network_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Network file; its `publishers` and `maintainers` are accepted.")
@click.option("--accept-publisher", "accepted", multiple=True, metavar="NAME:BASE64",
              help="Accept writes and records signed by this public key (repeatable).")
@click.option("--accept-maintainer", "accepted_maintainers", multiple=True,
              metavar="NAME:BASE64",
              help="Accept this public key as a maintainer: it may write and delete "
                   "(repeatable). Once any maintainer is listed (here or in the network "
                   "file's `maintainers`), other keys may not delete.")
@tls_options
@click.option("--node-id", default=None, metavar="ID",
              help="This node's id in the network file (default: the short host name); "
                   "with --network, an id the file does not list is refused.")
@click.option("--max-shard-bytes", type=click.IntRange(min=1),
              default=DEFAULT_MAX_SHARD_BYTES, show_default=True,
              help="Largest shard body accepted, in bytes.")
@click.option("--max-record-bytes", type=click.IntRange(min=1),
              default=DEFAULT_MAX_RECORD_BYTES, show_default=True,
              help="Largest record body accepted, in bytes.")
@click.option("--max-body-bytes-in-flight", type=click.IntRange(min=1),
              default=DEFAULT_MAX_BODY_BYTES_IN_FLIGHT, show_default=True,
              help="Request-body bytes read and held at once, node-wide; requests beyond "
                   f"wait for room, and are answered 503 after {DEFAULT_BODY_WAIT_SECONDS:g} s.")
@click.option("--body-stall-seconds", type=click.FloatRange(min=0, min_open=True, max=3600),
              default=DEFAULT_BODY_STALL_SECONDS, show_default=True, callback=_not_nan,
              help="A request body that sends no byte for this long is refused (408).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="Log level of the nixshard.node logger.")
@click.option("--access-log/--no-access-log", "access_log_on", default=True, show_default=True,
              help="Log one line per request on the nixshard.node.access logger (INFO): "
                   "remote address, request line, status, bytes sent, seconds taken.")
@click.option("--map", "map_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A signed network map to keep and serve (trusted as it is when the node "
                   "holds none yet; docs/network-map.md). Without --network, its publishers "
                   "and maintainers are the accepted keys.")
@click.option("--bootstrap", "bootstrap_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Bootstrap file: the maintainer keys that sign epoch 1, and nodes to ask "
                   "for maps.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="This node's ed25519 key file (`nixshard node join-request` makes one); "
                   "the node id derives from it.")
@click.option("--gossip-seconds", type=click.FloatRange(min=0.05, max=86400),
              default=DEFAULT_GOSSIP_SECONDS, show_default=True, callback=_not_nan,
              help="Seconds between two rounds of asking peers for newer maps.")
@click.option("--fault", "fault_specs", multiple=True, hidden=True, metavar="MODE[,MODE...]",
              help="TEST ONLY (needs NIXSHARD_TEST_FAULTS=1): stall=SECONDS, flip, short, "
                   "lie-has, deep-json, endless, trickle=BYTES_PER_SECOND, slow-has=SECONDS, "
                   "stale-records (see storage_node.faults).")
def node_command(data_dir: Path, listen: str, network_path: Path | None,
                 accepted: tuple[str, ...], accepted_maintainers: tuple[str, ...],
                 tls_cert: Path | None, tls_key: Path | None, node_id: str | None,
                 max_shard_bytes: int, max_record_bytes: int, max_body_bytes_in_flight: int,
                 body_stall_seconds: float, log_level: str, access_log_on: bool,
                 map_path: Path | None, bootstrap_path: Path | None, key_path: Path | None,
                 gossip_seconds: float, fault_specs: tuple[str, ...]) -> None:
    """Run a storage node: keep shards and signed records, serve them over HTTP(S).

    Reads are open; writes must be signed by an accepted publisher key, deletes
    by a maintainer key when maintainers are listed.
    """
    host, port = parse_listen(listen)
    faults = gather_faults(fault_specs)
    ssl_context = tls_context_or_exit(tls_cert, tls_key)
    network = None
    if network_path is not None:
        try:
            network = load_network(network_path)
        except NetworkFileError as exc:
            raise click.ClickException(str(exc)) from exc
    signed_map, bootstrap = load_map_options(map_path, bootstrap_path)
    given = node_id is not None
    identity = load_key_option(key_path)
    node_id = node_id_from_key(identity, key_path, node_id) or socket.gethostname().split(".")[0]
    check_node_id(node_id, network, network_path, given or key_path is not None)
    if network is None and signed_map is not None:
        # a node not in the map yet (it asked to join) still keeps and serves maps
        network = signed_map.network
    publishers = gather_publishers(network, accepted, accepted_maintainers)
    maintainers = gather_maintainers(network, accepted_maintainers)
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("nixshard").setLevel(log_level.upper())
    config = NodeConfig(data_dir=data_dir, node_id=node_id, publishers=publishers,
                        max_shard_bytes=max_shard_bytes, max_record_bytes=max_record_bytes,
                        max_body_bytes_in_flight=max_body_bytes_in_flight,
                        body_stall_seconds=body_stall_seconds, faults=faults,
                        maintainers=maintainers,
                        quotas=dict(network.quotas) if network is not None else {},
                        network_map=signed_map, bootstrap=bootstrap,
                        keys_from_map=network_path is None and (
                            signed_map is not None or bootstrap is not None),
                        gossip_seconds=gossip_seconds, identity=identity)
    try:
        app = create_app(config)
    except StorageNodeError as exc:
        raise click.ClickException(exc.message) from exc
    stats = app_stats_line(app)
    if faults.active:
        log.warning("TEST FAULTS ACTIVE on node %s: %s (this node misbehaves on purpose)",
                    node_id, faults.describe())
    log.info("node %s listening on %s://%s:%d, data %s (%s), publishers %s",
             node_id, "http" if ssl_context is None else "https", host, port, data_dir, stats,
             ", ".join(sorted(publishers)))
    log_roles(maintainers)
    if ssl_context is not None:
        assert tls_cert is not None
        log.info("TLS: %s", certificate_summary(tls_cert))
    try:
        run_app(app, host, port, ssl_context=ssl_context,
                access_log=buffered_logger(ACCESS_LOGGER) if access_log_on else None,
                access_log_class=AccessLogger)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    flush_logger(ACCESS_LOGGER)
    log.info("node %s stopped", node_id)


def load_map_options(map_path: Path | None, bootstrap_path: Path | None
                     ) -> tuple[SignedMap | None, Bootstrap | None]:
    """The signed map of ``--map`` and the bootstrap of ``--bootstrap`` (each None when
    not given).

    Raises:
        click.ClickException: unreadable or malformed (the message says why).
    """
    try:
        signed = None if map_path is None else load_signed_map(map_path)
        bootstrap = None if bootstrap_path is None else load_bootstrap(bootstrap_path)
    except MapError as exc:
        raise click.ClickException(str(exc)) from exc
    return signed, bootstrap


def load_key_option(key_path: Path | None) -> NodeIdentity | None:
    """The node key of ``--key`` (None when not given).

    Raises:
        click.ClickException: the key file cannot be read.
    """
    if key_path is None:
        return None
    try:
        return load_identity(key_path)
    except IdentityError as exc:
        raise click.ClickException(exc.message) from exc


def node_id_from_key(identity: NodeIdentity | None, key_path: Path | None,
                     node_id: str | None) -> str | None:
    """The node id: derived from the key of ``--key`` (``identity``, read from
    ``key_path``) when given (``--node-id`` must then be that id), else ``--node-id``
    (None when neither is given).

    Raises:
        click.UsageError: ``--node-id`` is not the key's id.
    """
    if identity is None:
        return node_id
    derived = identity.node_id
    if node_id is not None and node_id != derived:
        raise click.UsageError(f"--node-id {node_id!r} is not the id of the key {key_path} "
                               f"({derived!r}); leave --node-id out")
    return derived


def log_roles(maintainers: frozenset[str] | None) -> None:
    """Say once at start-up who may delete: the maintainers, or (none listed) that
    every accepted key may, as before roles existed."""
    if maintainers is None:
        log.warning("no maintainer key listed (`maintainers` in the network file, or "
                    "--accept-maintainer): every accepted publisher key may delete shards "
                    "and records; list maintainers to keep deletes to them (docs/keys.md)")
    else:
        log.info("maintainers (may delete): %s", ", ".join(sorted(maintainers)))


def app_stats_line(app: web.Application) -> str:
    """A short summary of what the app's store holds, for the start-up log line."""
    s = app[STORE].stats
    return f"{s.shards} shards, {s.shard_bytes} bytes, {s.records} records"

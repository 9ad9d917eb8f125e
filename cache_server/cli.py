"""``nixshard serve``: the only place the daemon reads its configuration.

Secrets come from files (``--signing-key``, ``--upload-credentials``,
``--cache-secret``, ``--upstream-netrc``, ``--upstream-token-file``,
``--tls-key``) or the environment (``$NIXSHARD_SIGNING_KEY``,
``$NIXSHARD_UPLOAD_CREDENTIALS``, ``$NIXSHARD_CACHE_SECRET``), never from the
command line or the TOML file's values.

``--workers N`` (N > 1) serves the port from N processes
(:mod:`http_serving.workers`): this process reads and checks the
configuration once, binds the port and supervises; each worker gets the
finished :class:`~cache_server.config.ServeConfig` in a :class:`GatewayPlan`
and runs :func:`gateway_worker`.  With one worker nothing of that runs.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import click

from http_serving.access_log import AccessLogger, buffered_logger
from http_serving.addresses import parse_host_port
from http_serving.server import run_app
from http_serving.tls import TlsConfigError, certificate_summary, server_ssl_context
from http_serving.tls_options import tls_context_or_exit, tls_options
from http_serving.workers import WorkerLink, run_workers
from nix_formats.errors import NixFormatError
from nix_formats.keys import PublicKey
from nix_records import (
    CACHE_SECRET_ENV,
    SIGNING_KEY_ENV,
    SecretError,
    SigningKeyError,
    load_keyring,
    load_signing_key,
    read_secret,
)
from storage_network import DEFAULT_HEDGE_AFTER, Keyring, Network, NetworkFileError
from storage_network.errors import MapError
from storage_network.network_map.source import read_network
from storage_network.nodes.scores import Scores, ScoresFileError, default_scores_path
from storage_network.read.stream import DEFAULT_PREFETCH

from .app import create_app
from .config import (
    DEFAULT_CACHE_MAX_BYTES,
    DEFAULT_CACHE_MIN_FREE_BYTES,
    DEFAULT_MAX_UPLOAD_BYTES,
    ServeConfig,
    UploadConfig,
    UpstreamConfig,
)
from .credentials import Credential, CredentialsError, parse_credentials
from .upstream_auth import UpstreamAuth, UpstreamAuthError
from .upstream_urls import check_upstream_url

CREDENTIALS_ENV = "NIXSHARD_UPLOAD_CREDENTIALS"
ACCESS_LOGGER = "nixshard.serve.access"
LOG_FORMAT = "%(asctime)s %(name)s %(message)s"
log = logging.getLogger("nixshard.serve")


@dataclass(frozen=True)
class GatewayPlan:
    """What a worker of ``nixshard serve --workers N`` needs (picklable): the checked
    configuration, the listen address (``host``, ``port``: names the sites; the
    sockets come from the supervisor), the TLS files already checked by the
    supervisor (both or neither), and whether to write the access log."""

    config: ServeConfig
    host: str
    port: int
    tls_cert: Path | None
    tls_key: Path | None
    access_log: bool


def gateway_worker(plan: GatewayPlan, link: WorkerLink) -> None:
    """One worker process of ``nixshard serve --workers N``: the gateway app of
    ``plan`` on the sockets of ``link`` until SIGTERM
    (:meth:`http_serving.workers.WorkerLink.serve`).

    Raises:
        TlsConfigError: the TLS files changed since the supervisor checked them.
    """
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    ssl_context = (server_ssl_context(plan.tls_cert, plan.tls_key)
                   if plan.tls_cert is not None and plan.tls_key is not None else None)
    tls = {"ssl_context": ssl_context} if ssl_context is not None else {}
    link.serve(create_app(plan.config), plan.host, plan.port,
               access_log=buffered_logger(ACCESS_LOGGER) if plan.access_log else None,
               access_log_class=AccessLogger, **tls)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nixshard/serve`` (``~/.cache/nixshard/serve`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nixshard" / "serve"


@click.command("serve")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML), a signed network map or a bootstrap file.")
@click.option("--listen", default="127.0.0.1:5000", show_default=True, help="HOST:PORT.")
@click.option("--priority", default=30, show_default=True,
              help="Priority in nix-cache-info (lower wins; cache.nixos.org is 40).")
@click.option("--node-timeout", default=10.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds one request to a node may take, counted from when it is sent "
                   "(time waiting inside the gateway for a connection slot does not count): "
                   "connecting (at most 5 s), the first byte of the answer, each pause in it "
                   "and the whole exchange must each fit.")
@click.option("--prefetch", default=DEFAULT_PREFETCH, show_default=True,
              help="Chunks fetched ahead of the one being sent (each node serves them in "
                   "order, a few batch reads at a time).")
@click.option("--negative-ttl", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds an absent narinfo is remembered (0: ask the network every time).")
@click.option("--scores", "scores_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="Audit scores file written by `nixshard audit`; orders reads among nodes "
                   "in good standing.  [default: $XDG_STATE_HOME/nixshard/scores.json if it "
                   "exists]")
@click.option("--hedge-after", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_HEDGE_AFTER, show_default=True, metavar="SECONDS",
              help="Seconds a chunk waits for its first k shards before asking one more node.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local disk cache of rebuilt NARs and staged uploads.  "
                   "[default: $XDG_CACHE_HOME/nixshard/serve]")
@click.option("--cache-max-bytes", type=click.IntRange(min=0), default=DEFAULT_CACHE_MAX_BYTES,
              show_default=True, help="Bytes of NARs the local cache keeps (LRU); 0 keeps none.")
@click.option("--cache-min-free-bytes", type=click.IntRange(min=0),
              default=DEFAULT_CACHE_MIN_FREE_BYTES, show_default=True,
              help="Bytes the local cache always leaves free on its filesystem: it evicts to "
                   "keep them, and streams a NAR uncached when it cannot.")
@click.option("--signing-key", type=click.Path(dir_okay=False), default=None,
              help="Key file (nix-store --generate-binary-cache-key) that signs the records of "
                   "uploads and upstream copies; the network file must list it.  "
                   "[default: the key text in $NIXSHARD_SIGNING_KEY, if set]")
@click.option("--upload-credentials", type=click.Path(dir_okay=False), default=None,
              help="Credentials file (HTTP basic auth): `user:secret[:scopes]` lines, secret "
                   "an argon2 hash (`nixshard credentials add`) or a plaintext password, "
                   "scopes `read`, `write` (default both) and `prefix=NAME`.  Credentials "
                   "with the write scope may upload; with --read-auth, reads need the read "
                   "scope.  Without it (and without $NIXSHARD_UPLOAD_CREDENTIALS) uploads are "
                   "refused.")
@click.option("--trusted-upload-key", multiple=True, metavar="NAME:BASE64",
              help="Nix key whose Sig: makes an upload acceptable (repeatable).  "
                   "[default: the network file's publishers]")
@click.option("--sign-uploads/--no-sign-uploads", default=False, show_default=True,
              help="Sign uploads that carry no trusted Sig: with --signing-key instead of "
                   "refusing them.")
@click.option("--max-upload-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_UPLOAD_BYTES,
              show_default=True, help="Largest upload body, and largest NAR file an upstream "
                                      "ingest downloads, in bytes.")
@click.option("--read-auth/--no-read-auth", default=None,
              help="Require credentials with the read scope for reads too (/healthz stays "
                   "open).  "
                   "[default: on for a private network, off for a public one]")
@click.option("--cache-secret", type=click.Path(dir_okay=False), default=None,
              help="Keyring file of a private network (`nixshard key generate-cache-secret`; "
                   "newest secret first).  [default: the keyring text in "
                   f"${CACHE_SECRET_ENV}, if set]")
@click.option("--upstream", multiple=True, metavar="URL",
              help="Binary cache asked on a miss, in order (repeatable), e.g. "
                   "https://cache.nixos.org.")
@click.option("--upstream-key", multiple=True, metavar="NAME:BASE64",
              help="Key an upstream narinfo must be signed by (repeatable; needed with "
                   "--upstream).")
@click.option("--ingest-upstream/--no-ingest-upstream", default=False, show_default=True,
              help="Copy paths served from an upstream into the network (needs --signing-key).")
@click.option("--upstream-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Seconds per request to an upstream cache.")
@click.option("--upstream-netrc", type=click.Path(dir_okay=False), default=None,
              help="netrc file (the format of Nix's `netrc-file`) with the basic-auth "
                   "credentials of private upstream caches, matched by host name.")
@click.option("--upstream-token-file", type=click.Path(dir_okay=False), default=None,
              help="File of `HOST TOKEN` lines (HOST or HOST:PORT of an upstream): the "
                   "token is sent to that upstream as `Authorization: Bearer TOKEN` (it "
                   "wins over a netrc entry).")
@tls_options
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="Log one line per request (logger nixshard.serve.access).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes serving the port (SO_REUSEPORT); they share the disk cache "
                   "(one fill per NAR), the access log and /metrics.  [default: the number "
                   "of cores]")
def serve_command(network_file: str, listen: str, priority: int, node_timeout: float,
                  prefetch: int, negative_ttl: float, scores_file: Path | None,
                  hedge_after: float,
                  cache_dir: Path | None, cache_max_bytes: int, cache_min_free_bytes: int,
                  signing_key: str | None,
                  upload_credentials: str | None, trusted_upload_key: tuple[str, ...],
                  sign_uploads: bool, max_upload_bytes: int, read_auth: bool | None,
                  cache_secret: str | None,
                  upstream: tuple[str, ...], upstream_key: tuple[str, ...],
                  ingest_upstream: bool, upstream_timeout: float,
                  upstream_netrc: str | None, upstream_token_file: str | None,
                  tls_cert: Path | None, tls_key: Path | None, access_log: bool,
                  workers: int | None) -> None:
    """Serve the Nix binary-cache protocol from the shard network (the gateway)."""
    if (upstream_netrc or upstream_token_file) and not upstream:
        raise click.UsageError("--upstream-netrc and --upstream-token-file need --upstream: "
                               "they hold the credentials of upstream caches")
    try:
        host, port = parse_host_port(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from exc
    try:
        network = read_network(network_file, os.environ)
    except (NetworkFileError, MapError) as exc:
        raise click.ClickException(str(exc)) from exc
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    ssl_context = serving_tls_context(tls_cert, tls_key)
    keyring = keyring_or_exit(cache_secret, network)
    credentials = load_credentials(upload_credentials)
    readers = any(cred.scopes.read for cred in credentials.values())
    writers = any(cred.scopes.write for cred in credentials.values())
    defaulted = read_auth is None
    read_auth = network.private if read_auth is None else read_auth
    if read_auth and not readers:
        raise click.UsageError(
            "a private cache requires read credentials: give --upload-credentials (or "
            f"${CREDENTIALS_ENV}) with at least one credential of the read scope, or "
            "--no-read-auth to serve it to anyone who can reach the gateway" if defaulted else
            f"--read-auth needs --upload-credentials (or ${CREDENTIALS_ENV}) with at least "
            "one credential of the read scope")
    keyed = signing_key is not None or bool(os.environ.get(SIGNING_KEY_ENV))
    if (writers or ingest_upstream) and not keyed:
        raise click.UsageError("uploads (credentials with the write scope in "
                               "--upload-credentials) and --ingest-upstream need "
                               f"--signing-key or ${SIGNING_KEY_ENV}: the gateway signs "
                               "the records it writes")
    uploads = None
    publisher = None
    if keyed:
        try:
            key = load_signing_key(signing_key, os.environ, network=network)
        except SigningKeyError as exc:
            raise click.ClickException(str(exc)) from exc
        publisher = key.publisher
        if writers:
            trusted = parse_keys(trusted_upload_key, "--trusted-upload-key") or \
                publisher_keys(network)
            uploads = UploadConfig(publisher=publisher, nix_key=key.nix_key, trusted_keys=trusted,
                                   sign_uploads=sign_uploads, max_bytes=max_upload_bytes)
    upstream_config = None
    if upstream:
        keys = parse_keys(upstream_key, "--upstream-key")
        if not keys:
            raise click.UsageError("--upstream needs at least one --upstream-key: upstream "
                                   "narinfos are served only with a valid signature")
        try:
            urls = tuple(check_upstream_url(url) for url in upstream)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--upstream") from exc
        auth = upstream_auth_or_exit(urls, upstream_netrc, upstream_token_file, read_auth)
        upstream_config = UpstreamConfig(urls=urls, keys=keys, ingest=ingest_upstream,
                                         publisher=publisher, timeout=upstream_timeout,
                                         max_bytes=max_upload_bytes, auth=auth)
    config = ServeConfig(network=network, cache_dir=cache_dir or default_cache_dir(),
                         priority=priority, node_timeout=node_timeout, prefetch=prefetch,
                         negative_ttl=negative_ttl,
                         scores=load_scores(scores_file), hedge_after=hedge_after,
                         cache_max_bytes=cache_max_bytes,
                         cache_min_free_bytes=cache_min_free_bytes, read_auth=read_auth,
                         uploads=uploads, upstream=upstream_config, credentials=credentials,
                         keyring=keyring)
    private = f"private, secret {keyring.current.name}; " if keyring is not None else ""
    workers = workers or os.cpu_count() or 1
    scheme = "https" if ssl_context is not None else "http"
    click.echo(f"nixshard serve: {scheme}://{host}:{port} ({network.k}-of-{network.n}, "
               f"{len(network.nodes)} nodes; {private}reads "
               f"{'need credentials' if read_auth else 'open'}; "
               f"uploads {'on' if uploads else 'off'}; "
               f"{len(upstream)} upstream(s); cache {config.cache_dir}"
               f"{f'; {workers} workers' if workers > 1 else ''})")
    tls = {"ssl_context": ssl_context} if ssl_context is not None else {}
    try:
        if workers == 1:
            run_app(create_app(config), host, port,
                    access_log=buffered_logger(ACCESS_LOGGER) if access_log else None,
                    access_log_class=AccessLogger, **tls)
            return
        plan = GatewayPlan(config, host, port, tls_cert, tls_key, access_log)
        status = run_workers(workers, gateway_worker, plan, host, port, what="nixshard serve")
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    if status:
        raise SystemExit(status)


def keyring_or_exit(path: str | None, network: Network) -> Keyring | None:
    """The keyring of ``--cache-secret`` or ``$NIXSHARD_CACHE_SECRET`` for ``network``
    (:func:`nix_records.load_keyring`); None for a public network.

    Raises:
        click.ClickException: a private network without a secret, a public one
            with one, or an unreadable or malformed keyring: the gateway does not
            start, and its log (stderr) says why.
    """
    try:
        return load_keyring(path, os.environ, network)
    except SecretError as exc:
        raise click.ClickException(f"not serving: {exc}") from exc


def load_credentials(path: str | None) -> dict[str, Credential]:
    """user -> credential (:mod:`cache_server.credentials`) from ``path``, else
    ``$NIXSHARD_UPLOAD_CREDENTIALS``, else empty.

    Logs one warning per plaintext password (naming the user and the line,
    never the password): it should be an argon2 hash.

    Raises:
        click.ClickException: unreadable file or a malformed line.
    """
    source = path or f"${CREDENTIALS_ENV}"
    try:
        text = read_secret(path, os.environ, CREDENTIALS_ENV, "upload credentials")
        credentials = parse_credentials(text, source) if text else {}
    except (SecretError, CredentialsError) as exc:
        raise click.ClickException(str(exc)) from exc
    for cred in credentials.values():
        if not cred.hashed:
            log.warning("%s line %d: user %r has a plaintext password; store an argon2 hash "
                        "instead (nixshard credentials add %s --replace --file FILE)",
                        source, cred.line, cred.user, cred.user)
    return credentials


def upstream_auth_or_exit(urls: tuple[str, ...], netrc_file: str | None,
                          token_file: str | None, read_auth: bool) -> UpstreamAuth | None:
    """The credentials of ``--upstream-netrc`` and ``--upstream-token-file`` (None without
    either), with one log line per upstream saying what it gets (never a secret).

    A private upstream behind a gateway with open reads is served to anyone
    who reaches the gateway: that is logged as a warning.

    Raises:
        click.ClickException: a file that cannot be read or parsed.
    """
    if netrc_file is None and token_file is None:
        return None
    try:
        auth = UpstreamAuth.load(netrc_file, token_file)
    except UpstreamAuthError as exc:
        raise click.ClickException(str(exc)) from exc
    private = []
    for url in urls:
        what = auth.describe(url)
        log.info("upstream %s: %s", url, what)
        if what != "no credentials":
            private.append(url)
    if not private:
        log.warning("neither --upstream-netrc nor --upstream-token-file has credentials for "
                    "any upstream (%s)", ", ".join(urls))
    elif not read_auth:
        log.warning("reads are open (no --read-auth): anyone who reaches this gateway "
                    "reads the private upstream(s) %s through it", ", ".join(private))
    return auth


def serving_tls_context(cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext | None:
    """The server TLS context of ``--tls-cert`` and ``--tls-key`` (None without them;
    :func:`http_serving.tls_options.tls_context_or_exit`); logs what certificate is served.

    Raises:
        click.UsageError: only one of them is given.
        click.ClickException: unreadable, malformed, expired or mismatched files (the
            gateway does not start, and says why).
    """
    context = tls_context_or_exit(cert_file, key_file, fatal_prefix="not serving: ")
    if context is not None:
        assert cert_file is not None
        try:
            log.info("serving HTTPS: %s", certificate_summary(cert_file))
        except TlsConfigError as exc:
            raise click.ClickException(f"not serving: {exc}") from exc
    return context


def parse_keys(texts: tuple[str, ...], option: str) -> tuple[PublicKey, ...]:
    """Nix public keys ``name:base64`` (or files holding one).

    Raises:
        click.BadParameter: a key that does not parse (naming the option).
    """
    keys = []
    for text in texts:
        try:
            keys.append(PublicKey.load(text) if os.path.isfile(text) else PublicKey.parse(text))
        except (NixFormatError, OSError) as exc:
            raise click.BadParameter(f"{text[:60]!r}: {exc}", param_hint=option) from exc
    return tuple(keys)


def publisher_keys(network: Network) -> tuple[PublicKey, ...]:
    """The network file's publisher keys as Nix public keys."""
    return tuple(PublicKey.parse(key.text()) for key in network.publishers.values())


def load_scores(path: Path | None) -> Scores | None:
    """The audit scores of ``--scores``, else of the default file if it exists, else None.

    A ``--scores`` file that does not exist yet gives empty scores (logged).

    Raises:
        click.ClickException: the file exists but is unreadable or malformed.
    """
    if path is None:
        default = default_scores_path()
        if not default.is_file():
            return None
        path = default
    elif not path.exists():
        logging.getLogger("nixshard.serve").warning(
            "scores file %s does not exist (yet): every node scores 1.0", path)
    try:
        return Scores.load(path)
    except ScoresFileError as exc:
        raise click.ClickException(str(exc)) from exc

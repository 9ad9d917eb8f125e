"""``nixshard push``: the only place the uploader reads its configuration."""

from __future__ import annotations

import asyncio
import logging
import os

import click
from click.core import ParameterSource

from nix_formats.keys import SecretKey
from nix_records import (
    CACHE_SECRET_ENV,
    SecretError,
    SigningKeyError,
    load_keyring,
    load_signing_key,
)
from storage_network import (
    Keyring,
    Network,
    NetworkClient,
    NetworkFileError,
    Publisher,
    load_network,
)

from .closure import PathInfo, query_closure
from .errors import PushFailedError, StoreWatchError, UploaderError
from .progress import nar_progress, nar_total, show_progress
from .push import DEFAULT_JOBS, ProgressCallback, PushSummary, format_summary, push_closure
from .watch import DEFAULT_INTERVAL, DEFAULT_STORE_DIR, watch_store


async def run_push(network: Network, infos: list[PathInfo], nix_key: SecretKey,
                   publisher: Publisher, *, jobs: int = DEFAULT_JOBS,
                   progress: ProgressCallback | None = None,
                   keyring: Keyring | None = None) -> PushSummary:
    """Push ``infos`` over a fresh network client, ``jobs`` paths at once.

    See :func:`uploader.push.push_closure` (records in dependency order).
    ``keyring``: a private network's cache secrets (everything is sealed).

    Raises:
        PushFailedError: some paths were not pushed (the others were).
        NixQueryError: the references form a cycle.
    """
    async with NetworkClient(network, keyring=keyring) as net:
        return await push_closure(net, infos, nix_key, publisher, jobs=jobs, progress=progress)


def check_mode(ctx: click.Context, store_paths: tuple[str, ...], watch: bool) -> None:
    """Exactly one of STORE_PATHS and ``--watch-store``; watch-only options only with it.

    Raises:
        click.UsageError: both or neither given, or ``--watch-interval`` /
            ``--store-dir`` on the command line without ``--watch-store``.
    """
    if watch and store_paths:
        raise click.UsageError("give STORE_PATHS or --watch-store, not both", ctx)
    if not watch and not store_paths:
        raise click.UsageError("give STORE_PATHS to push, or --watch-store to push new store "
                               "paths as they appear", ctx)
    if not watch:
        for name, flag in (("watch_interval", "--watch-interval"), ("store_dir", "--store-dir")):
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
                raise click.UsageError(f"{flag} applies only with --watch-store", ctx)


def log_to_stderr() -> None:
    """Log lines on stderr: the uploader's at INFO (one per pushed path), others at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("nixshard.push").setLevel(logging.INFO)


def push_paths(network: Network, nix_key: SecretKey, publisher: Publisher,
               store_paths: tuple[str, ...], jobs: int, progress: bool | None,
               keyring: Keyring | None = None) -> None:
    """Push the closures of ``store_paths``; summary on stdout, bar and errors on stderr.

    Raises:
        click.ClickException: a path is not valid, or some paths were not
            pushed (they are named; the summary is printed first).
    """
    try:
        infos = query_closure(list(store_paths))
    except UploaderError as exc:
        raise click.ClickException(str(exc)) from exc
    stderr = click.get_text_stream("stderr")
    failure: PushFailedError | None = None
    with nar_progress(nar_total(infos), show_progress(progress, stderr), stderr) as bar:
        try:
            summary = asyncio.run(run_push(network, infos, nix_key, publisher, jobs=jobs,
                                           progress=bar, keyring=keyring))
        except PushFailedError as exc:
            failure, summary = exc, exc.summary
        except UploaderError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(format_summary(summary, network.k, network.m))
    if failure is not None:
        raise click.ClickException(str(failure))


def watch(network: Network, nix_key: SecretKey, publisher: Publisher, store_dir: str,
          interval: float, jobs: int, keyring: Keyring | None = None) -> None:
    """Run the store watcher until a signal; exit status 1 if the last round left paths out.

    Raises:
        click.ClickException: the store directory cannot be listed, a second
            signal abandoned a push, or the last round did not push everything.
    """
    log_to_stderr()
    try:
        report = asyncio.run(watch_store(network, nix_key, publisher, store_dir=store_dir,
                                         interval=interval, jobs=jobs, keyring=keyring))
    except StoreWatchError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"watch stopped: {len(report.pushed)} store paths pushed")
    if report.interrupted:
        raise click.ClickException("interrupted during a push: records written so far are "
                                   "consistent; push again to finish")
    if report.error is not None:
        raise click.ClickException(f"the last round failed: {report.error}")
    if report.unpushed:
        raise click.ClickException(str(PushFailedError(report.unpushed, PushSummary())))


@click.command("push")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML).")
@click.option("--signing-key", type=click.Path(dir_okay=False), default=None,
              help="Secret key file made by `nix-store --generate-binary-cache-key` "
                   "[default: the key text in $NIXSHARD_SIGNING_KEY].")
@click.option("--cache-secret", type=click.Path(dir_okay=False), default=None,
              help="Keyring file of a private network (its first secret seals what is "
                   f"pushed).  [default: the keyring text in ${CACHE_SECRET_ENV}, if set]")
@click.option("--jobs", type=click.IntRange(min=1), default=DEFAULT_JOBS, show_default=True,
              help="Store paths pushed at once (shards go in parallel; each record is "
                   "written after its references' records).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar of NAR bytes on stderr [default: when stderr is a terminal]. "
                   "Not used with --watch-store.")
@click.option("--watch-store", "watch_store_flag", is_flag=True,
              help="Keep running and push every new valid store path (with its closure) "
                   "as it appears, until SIGINT/SIGTERM; .drv files are skipped. "
                   "Takes no STORE_PATHS.")
@click.option("--watch-interval", type=click.FloatRange(min=0.1), default=DEFAULT_INTERVAL,
              show_default=True, metavar="SECONDS",
              help="With --watch-store: seconds between two listings of the store.")
@click.option("--store-dir", type=click.Path(file_okay=False), default=DEFAULT_STORE_DIR,
              show_default=True,
              help="With --watch-store: the Nix store directory to list (that of the store "
                   "`nix` uses).")
@click.argument("store_paths", nargs=-1)
@click.pass_context
def push_command(ctx: click.Context, network_file: str, signing_key: str | None,
                 cache_secret: str | None, jobs: int,
                 progress: bool | None, watch_store_flag: bool, watch_interval: float,
                 store_dir: str, store_paths: tuple[str, ...]) -> None:
    """Push the closures of STORE_PATHS into the network, each record after its references'.

    With --watch-store, push new store paths as they appear instead (start it
    before the build; paths already in the store are not pushed).  Exit status
    1 names the paths not pushed; paths that depend on them are not committed.
    """
    check_mode(ctx, store_paths, watch_store_flag)
    try:
        network = load_network(network_file)
    except NetworkFileError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        key = load_signing_key(signing_key, os.environ, network=network)
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        keyring = load_keyring(cache_secret, os.environ, network)
    except SecretError as exc:
        raise click.ClickException(str(exc)) from exc
    if watch_store_flag:
        watch(network, key.nix_key, key.publisher, store_dir, watch_interval, jobs, keyring)
    else:
        push_paths(network, key.nix_key, key.publisher, store_paths, jobs, progress, keyring)

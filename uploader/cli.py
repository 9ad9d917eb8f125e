"""``nixshard push``: the only place the uploader reads its configuration."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import click
from click.core import ParameterSource

from nix_formats.keys import SecretKey
from nix_records import (
    CACHE_SECRET_ENV,
    PinError,
    SecretError,
    SigningKeyError,
    check_pin_name,
    load_keyring,
    load_signing_key,
    pin_paths,
)
from storage_network import (
    Keyring,
    Network,
    NetworkClient,
    NetworkFileError,
    Publisher,
    StorageNetworkError,
)
from storage_network.errors import MapError
from storage_network.network_map.source import read_network

from .backoff import DEFAULT_RETRY_DELAY, DEFAULT_RETRY_MAX_DELAY
from .closure import PathInfo, query_closure, resolve_store_path
from .errors import PushFailedError, StoreWatchError, UploaderError
from .lease import lease_end, parse_duration
from .progress import nar_progress, nar_total, show_progress
from .push import DEFAULT_JOBS, ProgressCallback, PushSummary, format_summary, push_closure
from .spool import push_spool
from .spool_files import NEW_DIR, SpoolError
from .watch import DEFAULT_INTERVAL, DEFAULT_STORE_DIR, watch_store


async def run_push(network: Network, infos: list[PathInfo], nix_key: SecretKey,
                   publisher: Publisher, *, jobs: int = DEFAULT_JOBS,
                   progress: ProgressCallback | None = None,
                   keyring: Keyring | None = None,
                   expires: int | None = None) -> PushSummary:
    """Push ``infos`` over a fresh network client, ``jobs`` paths at once.

    See :func:`uploader.push.push_closure` (records in dependency order).
    ``keyring``: a private network's cache secrets (everything is sealed);
    ``expires``: unix seconds the records' lease ends at (None: never).

    Raises:
        PushFailedError: some paths were not pushed (the others were).
        NixQueryError: the references form a cycle.
    """
    async with NetworkClient(network, keyring=keyring) as net:
        return await push_closure(net, infos, nix_key, publisher, jobs=jobs, progress=progress,
                                  expires=expires)


def check_mode(ctx: click.Context, store_paths: tuple[str, ...], watch: bool,
               spool_dir: str | None = None) -> None:
    """Exactly one of STORE_PATHS, ``--watch-store`` and ``--spool``; the options of a
    mode only with it (on the command line; a config file may hold them all).

    Raises:
        click.UsageError: several modes or none given; ``--watch-interval``
            without ``--watch-store`` or ``--spool``; ``--store-dir`` or
            ``--push-existing`` without ``--watch-store``; ``--retry-delay`` or
            ``--retry-max-delay`` without either, or a cap below the first delay.
    """
    given = [name for name, on in (("STORE_PATHS", bool(store_paths)),
                                   ("--watch-store", watch),
                                   ("--spool", spool_dir is not None)) if on]
    if len(given) == 2:
        raise click.UsageError(f"give {given[0]} or {given[1]}, not both", ctx)
    if len(given) > 2:
        raise click.UsageError("give one of STORE_PATHS, --watch-store and --spool", ctx)
    if not given:
        raise click.UsageError("give STORE_PATHS to push, or --watch-store to push new store "
                               "paths as they appear, or --spool DIR to push what "
                               "nix/post-build-hook.sh spools", ctx)
    service = watch or spool_dir is not None
    only = [("store_dir", "--store-dir", watch, "--watch-store"),
            ("push_existing", "--push-existing", watch, "--watch-store"),
            ("watch_interval", "--watch-interval", service, "--watch-store or --spool"),
            ("retry_delay", "--retry-delay", service, "--watch-store or --spool"),
            ("retry_max_delay", "--retry-max-delay", service, "--watch-store or --spool")]
    for name, flag, allowed, modes in only:
        if not allowed and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            raise click.UsageError(f"{flag} applies only with {modes}", ctx)
    first, cap = ctx.params.get("retry_delay"), ctx.params.get("retry_max_delay")
    if service and first is not None and cap is not None and cap < first:
        raise click.UsageError(f"--retry-max-delay ({cap:g} s) is below --retry-delay "
                               f"({first:g} s)", ctx)


def log_to_stderr() -> None:
    """Log lines on stderr: the uploader's at INFO (one per pushed path) and the network
    map's (``network map: now at epoch N`` when a newer epoch is taken), others at
    WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("nixshard.push").setLevel(logging.INFO)
    logging.getLogger("nixshard.network_map").setLevel(logging.INFO)


def push_paths(network: Network, nix_key: SecretKey, publisher: Publisher,
               store_paths: tuple[str, ...], jobs: int, progress: bool | None,
               keyring: Keyring | None = None, lease: float | None = None) -> None:
    """Push the closures of ``store_paths``; summary on stdout, bar and errors on stderr.

    ``lease``: seconds the records written stay (from now; None: forever).

    Raises:
        click.ClickException: a path is not valid, some paths were not pushed
            (they are named; the summary is printed first), or a node refused
            the publisher for its quota (one line: the node's refusal and how
            many paths were not pushed).
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
                                           progress=bar, keyring=keyring,
                                           expires=lease_end(lease, time.time())))
        except PushFailedError as exc:
            failure, summary = exc, exc.summary
        except UploaderError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(format_summary(summary, network.k, network.m))
    if failure is not None and summary.quota is not None:
        raise click.ClickException(
            f"push stopped, over quota: {summary.quota}; {len(failure.failures)} store "
            "path(s) not pushed (no record written for them)")
    if failure is not None:
        raise click.ClickException(str(failure))


def watch(network: Network, nix_key: SecretKey, publisher: Publisher, store_dir: str,
          interval: float, jobs: int, keyring: Keyring | None = None, *,
          push_existing: bool = False, retry_delay: float = DEFAULT_RETRY_DELAY,
          retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY) -> None:
    """Run the store watcher until a signal; exit status 1 if the last round left paths out.

    ``push_existing``: push the valid paths already in the store too;
    ``retry_delay``/``retry_max_delay``: the backoff of failing paths (seconds).

    Raises:
        click.ClickException: the store directory cannot be listed, a second
            signal abandoned a push, or the last round did not push everything.
    """
    log_to_stderr()
    try:
        report = asyncio.run(watch_store(network, nix_key, publisher, store_dir=store_dir,
                                         interval=interval, jobs=jobs, keyring=keyring,
                                         push_existing=push_existing, retry_delay=retry_delay,
                                         retry_max_delay=retry_max_delay))
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


def spool(network: Network, nix_key: SecretKey, publisher: Publisher, spool_dir: str,
          interval: float, jobs: int, retry_delay: float, retry_max_delay: float,
          keyring: Keyring | None = None) -> None:
    """Run the spool service until a signal (:func:`uploader.spool.push_spool`).

    Exit status 0 after a signal, also when files are left: they stay in the
    spool for the next start (nothing is lost).  Log lines on stderr, one per
    pushed or failed spool file; a last line on stdout says what is left.

    Raises:
        click.ClickException: the spool directory cannot be created or listed.
    """
    log_to_stderr()
    try:
        report = asyncio.run(push_spool(network, nix_key, publisher, spool_dir=spool_dir,
                                        interval=interval, jobs=jobs, retry_delay=retry_delay,
                                        retry_max_delay=retry_max_delay, keyring=keyring))
    except SpoolError as exc:
        raise click.ClickException(str(exc)) from exc
    abandoned = " (a push in progress was abandoned)" if report.interrupted else ""
    click.echo(f"spool stopped{abandoned}: {report.files_pushed} spool files pushed, "
               f"{report.records_written} records written, {report.left} files left in "
               f"{os.path.join(spool_dir, NEW_DIR)}")


def _lease(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Click callback: ``--lease``'s duration as seconds (positive)."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
        lease_end(seconds, 0)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    return seconds


@click.command("push")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="The network file (TOML), a signed network map or a bootstrap file.")
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
                   "Not used with --watch-store or --spool.")
@click.option("--watch-store", "watch_store_flag", is_flag=True,
              help="Keep running and push every new valid store path (with its closure) "
                   "as it appears, until SIGINT/SIGTERM; .drv files are skipped. "
                   "Takes no STORE_PATHS.")
@click.option("--push-existing", is_flag=True,
              help="With --watch-store: also push the valid store paths already in the "
                   "store at start (by default only new ones are pushed).")
@click.option("--spool", "spool_dir", type=click.Path(file_okay=False), default=None,
              metavar="DIR",
              help="Keep running and push what nix/post-build-hook.sh spools in DIR "
                   "(DIR/new/*.paths, with closures); a file is deleted once all its paths "
                   "are pushed, failures are retried (--retry-delay); files left in DIR go "
                   "first; SIGTERM finishes the push in progress and exits 0, unpushed "
                   "files stay.  Takes no STORE_PATHS.")
@click.option("--watch-interval", type=click.FloatRange(min=0.1), default=DEFAULT_INTERVAL,
              show_default=True, metavar="SECONDS",
              help="With --watch-store or --spool: seconds between two listings of the "
                   "store or of the spool.")
@click.option("--store-dir", type=click.Path(file_okay=False), default=DEFAULT_STORE_DIR,
              show_default=True,
              help="With --watch-store: the Nix store directory to list (that of the store "
                   "`nix` uses).")
@click.option("--retry-delay", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_RETRY_DELAY, show_default=True, metavar="SECONDS",
              help="With --watch-store or --spool: wait before retrying a failed path or "
                   "spool file; it doubles with each failure in a row (with jitter: "
                   "50-100% of it) up to --retry-max-delay.")
@click.option("--retry-max-delay", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_RETRY_MAX_DELAY, show_default=True, metavar="SECONDS",
              help="With --watch-store or --spool: the longest wait between two tries.")
@click.option("--pin", "pin_name", default=None, metavar="NAME",
              help="After a successful push of STORE_PATHS, pin them under NAME (gc then "
                   "keeps their closures; as `nixshard pin add NAME ...`).")
@click.option("--pin-keep", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --pin: the pin keeps its N newest paths.")
@click.option("--lease", default=None, callback=_lease, metavar="DURATION",
              help="Records written stay for DURATION (30d, 12h, 90m, 45s, 2w) from now, "
                   "then count as absent and gc drops them; a path held with an earlier "
                   "end is pushed again (renewed). Only with STORE_PATHS. "
                   "[default: no lease, records never expire]")
@click.argument("store_paths", nargs=-1)
@click.pass_context
def push_command(ctx: click.Context, network_file: str, signing_key: str | None,
                 cache_secret: str | None, jobs: int,
                 progress: bool | None, watch_store_flag: bool, push_existing: bool,
                 spool_dir: str | None, watch_interval: float, store_dir: str,
                 retry_delay: float, retry_max_delay: float, pin_name: str | None,
                 pin_keep: int | None, lease: float | None,
                 store_paths: tuple[str, ...]) -> None:
    """Push the closures of STORE_PATHS into the network, each record after its references'.

    With --watch-store, push new store paths as they appear instead (start it
    before the build; paths already in the store are pushed only with
    --push-existing).  With --spool DIR, push what nix/post-build-hook.sh
    spools.  Exit status 1 names the paths not pushed; paths that depend on
    them are not committed.
    """
    check_mode(ctx, store_paths, watch_store_flag, spool_dir)
    check_pin(ctx, pin_name, pin_keep, bool(store_paths))
    if lease is not None and not store_paths:
        raise click.UsageError("--lease applies only to STORE_PATHS (not --watch-store or "
                               "--spool)", ctx)
    try:
        network = read_network(network_file, os.environ)
    except (NetworkFileError, MapError) as exc:
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
        watch(network, key.nix_key, key.publisher, store_dir, watch_interval, jobs, keyring,
              push_existing=push_existing, retry_delay=retry_delay,
              retry_max_delay=retry_max_delay)
    elif spool_dir is not None:
        spool(network, key.nix_key, key.publisher, spool_dir, watch_interval, jobs,
              retry_delay, retry_max_delay, keyring)
    else:
        push_paths(network, key.nix_key, key.publisher, store_paths, jobs, progress, keyring,
                   lease)
        if pin_name is not None:
            pin_pushed(network, key.publisher, pin_name, store_paths, pin_keep, keyring)


def check_pin(ctx: click.Context, pin_name: str | None, pin_keep: int | None,
              paths: bool) -> None:
    """``--pin`` only with STORE_PATHS and a valid name; ``--pin-keep`` only with ``--pin``.

    Raises:
        click.UsageError, click.BadParameter: what is wrong, in words.
    """
    if pin_keep is not None and pin_name is None:
        raise click.UsageError("--pin-keep applies only with --pin", ctx)
    if pin_name is None:
        return
    if not paths:
        raise click.UsageError("--pin applies only to STORE_PATHS (not --watch-store or "
                               "--spool)", ctx)
    try:
        check_pin_name(pin_name)
    except PinError as exc:
        raise click.BadParameter(str(exc), param_hint="--pin") from exc


def pin_pushed(network: Network, publisher: Publisher, name: str,
               store_paths: tuple[str, ...], keep: int | None,
               keyring: Keyring | None) -> None:
    """Pin the pushed ``store_paths`` (argument order: newest first) under ``name``.

    Raises:
        click.ClickException: the pin could not be written (the paths are pushed).
    """
    roots = [resolve_store_path(p) for p in store_paths]

    async def run() -> tuple[str, ...]:
        async with NetworkClient(network, keyring=keyring) as net:
            change = await pin_paths(net, publisher, name, roots, keep, check_present=False)
            return change.dropped

    try:
        dropped = asyncio.run(run())
    except (PinError, StorageNetworkError) as exc:
        raise click.ClickException(f"pushed, but not pinned: {exc}") from exc
    click.echo(f"pinned under {name}: {', '.join(roots)}"
               + (f"; dropped {', '.join(dropped)}" if dropped else ""))

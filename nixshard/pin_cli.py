"""``nixshard pin``: named store paths that ``nixshard gc`` keeps, closures included.

    nixshard pin add NAME STORE_PATH... [--keep N]
    nixshard pin remove NAME [STORE_PATH]
    nixshard pin list [NAME]

A pin is a signed record in the network (:mod:`nix_records.pins`); gc keeps
every path a pin holds and everything those paths reference (docs/gc.md).
``add`` and ``remove`` sign with the publisher key (``--signing-key`` or
``$NIXSHARD_SIGNING_KEY``); in a private network every command needs the
cache secret (``--cache-secret`` or ``$NIXSHARD_CACHE_SECRET``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from nix_formats.errors import StorePathError
from nix_formats.store_path import StorePath
from nix_records import (
    CACHE_SECRET_ENV,
    SIGNING_KEY_ENV,
    Pin,
    PinChange,
    PinError,
    is_pin,
    pin_paths,
    read_pin,
    unpin,
)
from storage_network import Keyring, Network, NetworkClient, StorageNetworkError
from storage_network.upkeep.record_scan import RecordScan
from storage_network.wire.sealed_metadata import open_metadata
from uploader.closure import resolve_store_path
from uploader.errors import UploaderError

from .cli_options import keyring_or_exit, network_or_exit, publisher_or_exit

F = TypeVar("F", bound=Callable[..., Any])


def _network_options(func: F) -> F:
    """``--network`` and ``--cache-secret``, shared by every subcommand."""
    func = click.option(
        "--cache-secret", type=click.Path(dir_okay=False), default=None,
        help="Keyring file of a private network (needed there).  "
             f"[default: the keyring text in ${CACHE_SECRET_ENV}, if set]")(func)
    func = click.option("--network", "network_file", required=True,
                        type=click.Path(dir_okay=False),
                        help="The network file (TOML), a signed network map or a "
                             "bootstrap file.")(func)
    return func


def _signing_option(func: F) -> F:
    return click.option(
        "--signing-key", type=click.Path(dir_okay=False), default=None,
        help="Secret key file of a publisher the nodes accept (signs the pin record).  "
             f"[default: the key text in ${SIGNING_KEY_ENV}]")(func)


def _json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON.")(func)


def _setup(network_file: str, cache_secret: str | None) -> tuple[Network, Keyring | None]:
    """The network file and its keyring (a private network's; None for a public one).

    Raises:
        click.ClickException: unreadable network file, a private network without
            a secret, a secret for a public one, a malformed keyring.
    """
    network = network_or_exit(network_file)
    return network, keyring_or_exit(network, cache_secret)


def store_path_arg(arg: str) -> str:
    """The full store path ``arg`` names: a store path as written (it need not exist
    on this machine), else where a symlink such as ``./result`` leads.

    Raises:
        click.BadParameter: neither.
    """
    try:
        return StorePath.parse(arg).path
    except StorePathError:
        pass
    try:
        return resolve_store_path(arg)
    except UploaderError as exc:
        raise click.BadParameter(str(exc), param_hint="STORE_PATH") from exc


def _run(work: Callable[[], Any]) -> Any:
    """``asyncio.run(work())``; pin and network errors become one-line exits (status 1)."""
    try:
        return asyncio.run(work())
    except (PinError, StorageNetworkError) as exc:
        raise click.ClickException(str(exc)) from exc


def _pin_json(pin: Pin) -> dict[str, Any]:
    return {"name": pin.name, "keep": pin.keep, "paths": list(pin.paths)}


def _change_json(change: PinChange) -> dict[str, Any]:
    return {**_pin_json(change.after), "dropped": list(change.dropped),
            "record_bytes": change.record_bytes}


def _pin_text(pin: Pin) -> list[str]:
    limit = f", keep {pin.keep}" if pin.keep is not None else ""
    return [f"pin {pin.name} ({len(pin.paths)} paths{limit})",
            *(f"  {path}" for path in pin.paths)]


@click.group("pin")
def pin_group() -> None:
    """Pins: named store paths that `nixshard gc` keeps with everything they reference."""


@pin_group.command("add")
@_network_options
@_signing_option
@click.option("--keep", type=click.IntRange(min=1), default=None, metavar="N",
              help="Keep at most the N newest paths under NAME (older ones are dropped "
                   "now and on later adds).  [default: the pin's own limit; none for a "
                   "new pin]")
@_json_option
@click.argument("name")
@click.argument("store_paths", nargs=-1, required=True, metavar="STORE_PATH...")
def add_command(network_file: str, cache_secret: str | None, signing_key: str | None,
                keep: int | None, as_json: bool, name: str,
                store_paths: tuple[str, ...]) -> None:
    """Pin STORE_PATH... under NAME, newest first (the paths must be in the network)."""
    network, keyring = _setup(network_file, cache_secret)
    publisher = publisher_or_exit(network, signing_key)
    paths = [store_path_arg(p) for p in store_paths]

    async def work() -> PinChange:
        async with NetworkClient(network, keyring=keyring) as net:
            return await pin_paths(net, publisher, name, paths, keep)

    change: PinChange = _run(work)
    if as_json:
        click.echo(json.dumps(_change_json(change), indent=2))
        return
    click.echo("\n".join(_pin_text(change.after)))
    for path in change.dropped:
        click.echo(f"dropped {path} (beyond keep {change.after.keep})")


@pin_group.command("remove")
@_network_options
@_signing_option
@_json_option
@click.argument("name")
@click.argument("store_path", required=False)
def remove_command(network_file: str, cache_secret: str | None, signing_key: str | None,
                   as_json: bool, name: str, store_path: str | None) -> None:
    """Unpin STORE_PATH from NAME, or every path of NAME; gc may then expire them."""
    network, keyring = _setup(network_file, cache_secret)
    publisher = publisher_or_exit(network, signing_key)
    path = None if store_path is None else store_path_arg(store_path)

    async def work() -> PinChange:
        async with NetworkClient(network, keyring=keyring) as net:
            return await unpin(net, publisher, name, path)

    change: PinChange = _run(work)
    if as_json:
        click.echo(json.dumps(_change_json(change), indent=2))
        return
    for dropped in change.dropped:
        click.echo(f"unpinned {dropped} from {name}")
    if not change.after.paths:
        click.echo(f"pin {name} holds no path now")


async def all_pins(net: NetworkClient) -> tuple[list[Pin], list[str]]:
    """Every pin in the network that holds a path, by name, and what could not be read.

    Scans every record of every node (:class:`storage_network.upkeep.record_scan.
    RecordScan`: one key at a time, each key's newest version), opening each in a
    private network; of two records pinning one name (written under two cache
    secrets) the newest counts.  Memory: the scan's pages and the pins found.

    Returns:
        The pins, sorted by name, and one line per node, record or pin that
        could not be read (a pin may hide behind it).
    """
    scan = RecordScan(net)
    unopened: list[str] = []
    problems: list[str] = []
    found: dict[str, tuple[tuple[int, bytes], Pin]] = {}
    async for item in scan:
        key, record = item.key, item.newest
        if record is None:
            if item.problems:
                unopened.append(f"record {key} could not be opened: "
                                f"{'; '.join(item.problems)}")
            continue
        if record.tombstone:
            continue
        metadata = record.metadata
        if net.keyring is not None:
            try:
                metadata, _ = open_metadata(net.keyring, key, metadata, record.manifest)
            except StorageNetworkError as exc:
                problems.append(f"record {key}: {exc}")
                continue
        if not is_pin(metadata):
            continue
        try:
            pin = Pin.from_metadata(metadata)
        except PinError as exc:
            problems.append(f"record {key}: {exc}")
            continue
        if pin.name not in found or found[pin.name][0] < record.version:
            found[pin.name] = (record.version, pin)
    unreachable = [f"node {n} could not list its records: {why}"
                   for n, why in sorted(scan.unreachable.items())]
    return ([pin for _, (_, pin) in sorted(found.items()) if pin.paths],
            unreachable + unopened + problems)


@pin_group.command("list")
@_network_options
@_json_option
@click.argument("name", required=False)
def list_command(network_file: str, cache_secret: str | None, as_json: bool,
                 name: str | None) -> None:
    """List pin NAME, or every pin (that reads every record of the network)."""
    network, keyring = _setup(network_file, cache_secret)

    async def work() -> tuple[list[Pin], list[str]]:
        async with NetworkClient(network, keyring=keyring) as net:
            if name is None:
                return await all_pins(net)
            pin = await read_pin(net, name)
            if pin is None or not pin.paths:
                raise PinError(f"there is no pin named {name}")
            return [pin], []

    pins, problems = _run(work)
    if as_json:
        click.echo(json.dumps({"pins": [_pin_json(p) for p in pins], "unread": problems},
                              indent=2))
    else:
        for pin in pins:
            click.echo("\n".join(_pin_text(pin)))
        if not pins:
            click.echo("no pins")
        for line in problems:
            click.echo(f"warning: {line}", err=True)
    if problems:
        raise click.exceptions.Exit(1)

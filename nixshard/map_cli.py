"""``nixshard map propose|sign|publish|show|bootstrap``: write, sign, spread and read
network maps (docs/network-map.md).

A maintainer proposes the next epoch as an unsigned draft (from the network
file for epoch 1, else from the current map with edits), maintainers of the
current epoch sign it one after another (the file passes from hand to hand),
and one of them publishes it to a few nodes, which pass it on to the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import aiohttp
import click

from nix_records import SigningKeyError, load_signing_key
from storage_network import PublisherKey, parse_publisher_key
from storage_network.capped_file import read_capped
from storage_network.config import NodeInfo
from storage_network.errors import AuthError, MapError, NodeError
from storage_network.network_map import (
    MapDocument,
    SignedMap,
    TrustRoot,
    bootstrap_from_map,
    document_from_network,
    load_bootstrap,
    load_signed_map,
)
from storage_network.network_map.join_request import MAX_JOIN_REQUEST_BYTES, parse_join_request
from storage_network.network_map.signatures import describe_signatures, verify_next
from storage_network.network_map.transport import get_map, put_map

from .cli_options import network_or_exit
from .private_file import write_private

MapPath = click.Path(dir_okay=False, path_type=Path)


@click.group("map")
def map_group() -> None:
    """Propose, sign, publish and show the signed network map."""


def _write_map(path: Path, signed: SignedMap) -> None:
    """Write a map file (mode 0644: it holds no secret)."""
    try:
        write_private(path, signed.to_bytes().decode("ascii"), keep_mode=True, new_mode=0o644)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc


def _load(path: Path) -> SignedMap:
    try:
        return load_signed_map(path)
    except MapError as exc:
        raise click.ClickException(str(exc)) from exc


def _key(value: str, option: str) -> PublisherKey:
    """A public key given as ``name:base64`` or as a file holding that text."""
    path = Path(value)
    text = path.read_text(errors="replace").strip() if path.is_file() else value
    try:
        return parse_publisher_key(text)
    except AuthError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc


def _quota(spec: str) -> tuple[str, int | None]:
    name, eq, value = spec.partition("=")
    if not eq or not name:
        raise click.BadParameter(f"{spec!r} is not NAME=BYTES", param_hint="--quota")
    if value.strip().lower() == "none":
        return name, None
    try:
        nbytes = int(value)
    except ValueError:
        raise click.BadParameter(f"{spec!r}: BYTES must be a whole number or 'none'",
                                 param_hint="--quota") from None
    if nbytes < 0:
        raise click.BadParameter(f"{spec!r}: BYTES must be >= 0", param_hint="--quota")
    return name, nbytes


def _join_request(path: Path) -> NodeInfo:
    try:
        return parse_join_request(read_capped(path, MAX_JOIN_REQUEST_BYTES))
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from exc
    except MapError as exc:
        raise click.ClickException(f"{path}: {exc}") from exc


def next_draft(current: SignedMap) -> MapDocument:
    """The document of the epoch after ``current``, before any edit (``previous`` names
    ``current``'s digest)."""
    return dataclasses.replace(current.document, epoch=current.epoch + 1,
                               previous=current.digest())


def write_draft(path: Path, doc: MapDocument) -> None:
    """Write the unsigned draft ``doc`` to ``path`` and say who signs it (stderr)."""
    _write_map(path, SignedMap(doc))
    click.echo(f"wrote the unsigned draft of epoch {doc.epoch} to {path}; maintainers of "
               f"{'the bootstrap file' if doc.epoch == 1 else f'epoch {doc.epoch - 1}'} "
               "sign it with `nixshard map sign`", err=True)


def _set_state(nodes: list[NodeInfo], ids: Iterable[str], state: str, option: str) -> None:
    for node_id in ids:
        for i, node in enumerate(nodes):
            if node.id == node_id:
                nodes[i] = dataclasses.replace(node, state=state)
                break
        else:
            raise click.BadParameter(f"the map has no node {node_id!r}", param_hint=option)


def edit_document(doc: MapDocument, *, add_nodes: Iterable[NodeInfo] = (),
                  drain: Iterable[str] = (), remove: Iterable[str] = (),
                  activate: Iterable[str] = (), k: int | None = None, m: int | None = None,
                  add_publishers: Iterable[PublisherKey] = (),
                  remove_publishers: Iterable[str] = (),
                  quotas: Iterable[tuple[str, int | None]] = (),
                  add_maintainers: Iterable[PublisherKey] = (),
                  remove_maintainers: Iterable[str] = (),
                  threshold: int | None = None) -> MapDocument:
    """``doc`` with the edits of ``map propose`` (not yet validated: the caller does).

    Raises:
        click.BadParameter: a node id, publisher or maintainer the map does not list,
            or a node or key listed already.
    """
    nodes = list(doc.nodes)
    for node in add_nodes:
        if any(n.id == node.id for n in nodes):
            raise click.BadParameter(f"node {node.id} is in the map already",
                                     param_hint="--add-node")
        nodes.append(node)
    _set_state(nodes, drain, "draining", "--drain")
    _set_state(nodes, remove, "removed", "--remove")
    _set_state(nodes, activate, "active", "--activate")
    publishers = _edit_keys(doc.publishers, add_publishers, remove_publishers, "publisher")
    maintainers = _edit_keys(doc.maintainers, add_maintainers, remove_maintainers,
                             "maintainer")
    names = {p.name for p in publishers}
    new_quotas = {name: q for name, q in doc.quotas.items() if name in names}
    for name, nbytes in quotas:
        if name not in names:
            raise click.BadParameter(f"{name!r} is not a publisher of the map",
                                     param_hint="--quota")
        if nbytes is None:
            new_quotas.pop(name, None)
        else:
            new_quotas[name] = nbytes
    return dataclasses.replace(
        doc, nodes=tuple(nodes), k=doc.k if k is None else k, m=doc.m if m is None else m,
        publishers=publishers, maintainers=maintainers, quotas=new_quotas,
        threshold=doc.threshold if threshold is None else threshold)


def _edit_keys(keys: tuple[PublisherKey, ...], add: Iterable[PublisherKey],
               remove: Iterable[str], what: str) -> tuple[PublisherKey, ...]:
    result = list(keys)
    for name in remove:
        if not any(k.name == name for k in result):
            raise click.BadParameter(f"the map has no {what} {name!r}",
                                     param_hint=f"--remove-{what}")
        result = [k for k in result if k.name != name]
    for key in add:
        if any(k.name == key.name for k in result):
            raise click.BadParameter(f"the map has a {what} {key.name!r} already",
                                     param_hint=f"--add-{what}")
        result.append(key)
    return tuple(result)


@map_group.command("propose")
@click.option("--network", "network_path", type=MapPath,
              help="Make epoch 1 from this network file (its nodes need public keys, its "
                   "`maintainers` sign epoch 2).")
@click.option("--from", "current_path", type=MapPath,
              help="Make the epoch after this signed map (the current one).")
@click.option("--add-node", "add_nodes", multiple=True, type=MapPath, metavar="REQUEST",
              help="Add the node of this join request file (`nixshard node join-request`).")
@click.option("--drain", multiple=True, metavar="ID", help="Set a node draining.")
@click.option("--remove", multiple=True, metavar="ID", help="Set a node removed.")
@click.option("--activate", multiple=True, metavar="ID", help="Set a node active again.")
@click.option("-k", "k", type=click.IntRange(min=1), help="Data shards per chunk.")
@click.option("-m", "m", type=click.IntRange(min=0), help="Parity shards per chunk.")
@click.option("--add-publisher", multiple=True, metavar="NAME:BASE64|FILE",
              help="Accept writes signed by this public key.")
@click.option("--remove-publisher", multiple=True, metavar="NAME")
@click.option("--quota", "quotas", multiple=True, metavar="NAME=BYTES",
              help="A publisher's bytes per node ('none': no quota).")
@click.option("--add-maintainer", multiple=True, metavar="NAME:BASE64|FILE",
              help="A maintainer of the new epoch (they sign the epoch after it).")
@click.option("--remove-maintainer", multiple=True, metavar="NAME")
@click.option("--threshold", type=click.IntRange(min=1),
              help="Maintainer signatures the epoch after this one needs [epoch 1: a "
                   "majority of the maintainers; later: unchanged].")
@click.option("-o", "--output", type=MapPath, required=True,
              help="Where to write the unsigned draft.")
def propose_command(network_path: Path | None, current_path: Path | None,
                    add_nodes: tuple[Path, ...], drain: tuple[str, ...],
                    remove: tuple[str, ...], activate: tuple[str, ...], k: int | None,
                    m: int | None, add_publisher: tuple[str, ...],
                    remove_publisher: tuple[str, ...], quotas: tuple[str, ...],
                    add_maintainer: tuple[str, ...], remove_maintainer: tuple[str, ...],
                    threshold: int | None, output: Path) -> None:
    """Write an unsigned draft of the next epoch of the network map.

    Epoch 1 comes from a network file (--network); a later epoch from the current
    signed map (--from) with the edits given.  Maintainers of the current epoch
    (for epoch 1: those of the bootstrap file) then sign it with `nixshard map sign`.
    """
    if (network_path is None) == (current_path is None):
        raise click.UsageError("give --network FILE (epoch 1) or --from MAP (the next "
                               "epoch), one of them")
    try:
        if network_path is not None:
            network = network_or_exit(str(network_path))
            count = len(network.maintainers or ())
            base = document_from_network(network, threshold or count // 2 + 1)
        else:
            assert current_path is not None
            base = next_draft(_load(current_path))
        doc = edit_document(
            base, add_nodes=[_join_request(p) for p in add_nodes], drain=drain,
            remove=remove, activate=activate, k=k, m=m,
            add_publishers=[_key(v, "--add-publisher") for v in add_publisher],
            remove_publishers=remove_publisher, quotas=[_quota(q) for q in quotas],
            add_maintainers=[_key(v, "--add-maintainer") for v in add_maintainer],
            remove_maintainers=remove_maintainer, threshold=threshold).validate()
    except MapError as exc:
        raise click.ClickException(str(exc)) from exc
    write_draft(output, doc)


@map_group.command("sign")
@click.argument("draft", type=MapPath)
@click.option("--key", "key_path", type=MapPath, default=None,
              help="The maintainer's Nix secret key file [default: $NIXSHARD_SIGNING_KEY].")
@click.option("-o", "--output", type=MapPath, default=None,
              help="Write the signed map here [default: DRAFT, replaced].")
def sign_command(draft: Path, key_path: Path | None, output: Path | None) -> None:
    """Add a maintainer's signature to DRAFT (signing twice with one key is one
    signature)."""
    signed = _load(draft)
    try:
        key = load_signing_key(key_path, os.environ)
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    signed = signed.signed_by(key.publisher)
    _write_map(output or draft, signed)
    click.echo(f"epoch {signed.epoch}: signed by {key.publisher.name}; "
               f"{len(signed.signatures)} signature(s): "
               f"{', '.join(s.key_name for s in signed.signatures)}", err=True)


async def _publish(signed: SignedMap, urls: tuple[str, ...],
                   timeout: float) -> list[tuple[str, int | None, str]]:
    async with aiohttp.ClientSession() as session:
        async def one(url: str) -> tuple[str, int | None, str]:
            try:
                status, text = await put_map(session, url, signed, timeout=timeout)
            except NodeError as exc:
                return url, None, str(exc)
            return url, status, text

        return list(await asyncio.gather(*(one(url) for url in urls)))


@map_group.command("publish")
@click.argument("signed_map", type=MapPath)
@click.option("--to", "urls", multiple=True, required=True, metavar="URL",
              help="A node to send the map to (repeatable); nodes pass it on to the rest.")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=600), default=30.0,
              show_default=True, help="Seconds per node.")
def publish_command(signed_map: Path, urls: tuple[str, ...], timeout: float) -> None:
    """Send SIGNED_MAP to nodes; say which took it.  Exits 1 when none did."""
    signed = _load(signed_map)
    taken = 0
    for url, status, text in asyncio.run(_publish(signed, urls, timeout)):
        if status in (200, 201):
            taken += 1
            click.echo(f"{url}: accepted epoch {signed.epoch} ({text})")
        else:
            click.echo(f"{url}: refused: {status or 'unreachable'} {text}")
    if not taken:
        raise click.ClickException(f"no node accepted epoch {signed.epoch}")


def _trust_for_show(previous: Path | None, bootstrap: Path | None,
                    signed: SignedMap) -> TrustRoot | None:
    try:
        if previous is not None:
            return _load(previous).trust_root()
        if bootstrap is not None:
            return load_bootstrap(bootstrap).trust_root()
    except MapError as exc:
        raise click.ClickException(str(exc)) from exc
    if signed.epoch == 1:  # epoch 1 names the maintainers that a bootstrap vouches for
        return bootstrap_from_map(signed).trust_root()
    return None


def describe_map(signed: SignedMap, root: TrustRoot | None) -> str:
    """The readable summary of ``map show``: epoch, parameters, nodes by operator,
    publishers, maintainers t-of-n, and the signatures checked against ``root``."""
    doc = signed.document
    lines = [f"epoch {doc.epoch}  sha256 {signed.digest()}",
             f"previous  {doc.previous or '(none: the first epoch)'}",
             f"k-of-n    {doc.k}-of-{doc.k + doc.m} (k={doc.k}, m={doc.m}), codec {doc.codec}, "
             f"placement {doc.placement}, record replicas {doc.record_replicas}",
             f"chunking  {doc.chunking.min_size}/{doc.chunking.avg_size}/"
             f"{doc.chunking.max_size} bytes, gc grace {doc.gc_grace_seconds} s"
             + (", private" if doc.private else "")]
    by_operator: dict[str, list[NodeInfo]] = defaultdict(list)
    for node in doc.nodes:
        by_operator[node.domain].append(node)
    lines.append(f"nodes     {len(doc.nodes)} ({sum(n.state == 'active' for n in doc.nodes)} "
                 f"active) of {len(by_operator)} operator(s)")
    for operator in sorted(by_operator):
        lines.append(f"  {operator}")
        for node in by_operator[operator]:
            zone = f" zone {node.zone}" if node.zone else ""
            lines.append(f"    {node.id}  {node.url}  {node.state}  weight {node.weight:g}"
                         f"{zone}")
    lines.append("publishers")
    for key in doc.publishers:
        quota = doc.quotas.get(key.name)
        lines.append(f"  {key.name}  quota {'none' if quota is None else f'{quota} bytes'}")
    lines.append(f"maintainers {doc.threshold}-of-{len(doc.maintainers)} sign epoch "
                 f"{doc.epoch + 1}: {', '.join(k.name for k in doc.maintainers)}")
    lines.append(describe_signatures(root, signed))
    return "\n".join(lines)


@map_group.command("show")
@click.argument("map_file", type=MapPath, required=False)
@click.option("--from", "url", metavar="URL", help="Show the newest map this node serves.")
@click.option("--epoch", type=click.IntRange(min=1), help="With --from: this epoch.")
@click.option("--previous", type=MapPath,
              help="Check the signatures against this map (the epoch before).")
@click.option("--bootstrap", type=MapPath,
              help="Check the signatures of epoch 1 against this bootstrap file.")
def show_command(map_file: Path | None, url: str | None, epoch: int | None,
                 previous: Path | None, bootstrap: Path | None) -> None:
    """Print a readable summary of MAP_FILE or of the map a node serves.

    The signatures are checked against --previous, else --bootstrap; epoch 1
    without either is checked against its own maintainers.
    """
    if (map_file is None) == (url is None):
        raise click.UsageError("give a MAP_FILE or --from URL, one of them")
    if url is not None:
        try:
            signed = asyncio.run(_get(url, epoch))
        except (NodeError, MapError) as exc:
            raise click.ClickException(str(exc)) from exc
        if signed is None:
            raise click.ClickException(f"{url} holds no map"
                                       + (f" of epoch {epoch}" if epoch else ""))
    else:
        assert map_file is not None
        signed = _load(map_file)
    root = _trust_for_show(previous, bootstrap, signed)
    click.echo(describe_map(signed, root))


async def _get(url: str, epoch: int | None) -> SignedMap | None:
    async with aiohttp.ClientSession() as session:
        return await get_map(session, url, epoch)


@map_group.command("bootstrap")
@click.argument("epoch1", type=MapPath)
@click.option("--node", "urls", multiple=True, metavar="URL",
              help="A node to ask for maps (repeatable) [default: the map's nodes].")
@click.option("-o", "--output", type=MapPath, required=True)
def bootstrap_command(epoch1: Path, urls: tuple[str, ...], output: Path) -> None:
    """Write the bootstrap file of a network from its signed EPOCH1 map."""
    signed = _load(epoch1)
    try:
        boot = bootstrap_from_map(signed, tuple(u.rstrip("/") for u in urls))
        verify_next(boot.trust_root(), signed)
    except MapError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        write_private(output, boot.to_toml(), keep_mode=True, new_mode=0o644)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {output}: {boot.threshold}-of-{len(boot.maintainers)} maintainers, "
               f"{len(boot.urls)} node(s)", err=True)

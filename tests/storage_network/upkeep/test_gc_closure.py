"""Closure-complete retention: gc never expires a record a kept record (or a pin) needs.

Three layers:

- :func:`plan_expiry` on hand-made inventories with a toy link reader (no Nix,
  no nodes): the seam storage_network offers is Nix-agnostic.
- Records holding hand-made narinfos (and pins) on one 6-node network of real
  node processes per module, collected with :func:`nix_records.record_links`;
  ages come from signed ``created`` times, last reads from record-file atimes.
- ``nixshard gc`` on a private network, without the cache secret (the links
  records carry in the clear, keyed) and with it, across a secret rotation; and,
  marked ``nix``, on a closure built and pushed with the real nix.

A collection sweeps the whole network: tests only assert about their own objects.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from nix_formats.realisation import DrvOutput, Realisation
from nix_formats.store_path import StorePath
from nix_records import narinfo_record, new_narinfo, pin_paths, record_links, unpin
from nix_records.pins import pin_record_key
from nix_records.realisation_record import realisation_record, realisation_record_key
from nix_records.retention import sealed_record_links
from nixshard.demo import build_closure
from nixshard.gc_cli import gc_command
from nixshard.localnet import LocalNetwork, env_with_nix_config, new_publisher
from nixshard.pin_cli import pin_group
from storage_network import CacheSecret, Keyring
from storage_network.client import NetworkClient
from storage_network.coding.sealing import seal
from storage_network.errors import NotFoundError
from storage_network.nodes.placement import record_nodes
from storage_network.read.record_lookup import fetch_record
from storage_network.upkeep.gc import collect_garbage
from storage_network.upkeep.gc_report import GcReport
from storage_network.upkeep.record_expiry import ExpiryPlan, LinkReader
from storage_network.wire.manifest import Manifest
from storage_network.wire.record import Record, seal_record
from storage_network.wire.sealed_metadata import seal_metadata
from storage_network.wire.write_auth import Publisher
from storage_network.write.publish import keyed_links
from tests.support.network import NODES, K, M, keyed_network
from tests.support.record_tables import close_tables, plan_records
from tests.support.records import NIX32, publish_path, store_path, stripe_ids

DAY = 86400.0


# --- the seam, without Nix: plan_expiry on hand-made inventories --------------------------


@dataclass(frozen=True)
class ToyLinks:
    needs: frozenset[str]
    pin: str | None
    label: str


def toy_reader(record: Record) -> ToyLinks | None:
    """Metadata ``toy needs=a,b;pin=NAME;label=L`` (every field optional); else unknown."""
    text = record.metadata.decode(errors="replace")
    if not text.startswith("toy "):
        return None
    fields = dict(part.split("=", 1) for part in text[4:].split(";") if part)
    needs = frozenset(k for k in fields.get("needs", "").split(",") if k)
    return ToyLinks(needs, fields.get("pin"), fields.get("label", record.key))


def toy_key(name: str) -> str:
    """A record key (32 nix32 characters) for a short test name."""
    rng = random.Random(name)
    return "".join(rng.choice(NIX32) for _ in range(32))


TOY_PUBLISHER = new_publisher("toy-1")[0]
T0 = 1_700_000_000.0


@pytest.fixture(autouse=True)
def _tables() -> Iterator[None]:
    yield
    close_tables()


class ToyInventory:
    """Live records to plan over: key -> (metadata, age in days), with last reads."""

    def __init__(self, keyring: Keyring | None = None) -> None:
        self.records: list[tuple[Record, float]] = []
        self.keyring = keyring

    def add(self, key: str, metadata: str, age_days: float, *, idle_days: float = 0.0,
            secret: CacheSecret | None = None, created_offset: int = 0,
            links: tuple[str, ...] = (), ring: Keyring | None = None, pin: bool = False,
            v1: bool = False) -> str:
        """Add a live record under ``key`` (keyed under ``secret`` and its metadata
        sealed, when given: with the plain ``links`` keyed under every secret of
        ``ring`` (default: ``secret`` alone) and ``pin`` in the clear, as a publisher
        writes them; ``v1``: sealed metadata version 1, no links in the clear);
        returns the key it is stored under."""
        manifest = Manifest("isa_l_rs_cauchy", K, M, (), sealed=secret is not None)
        data = metadata.encode()
        stored = key
        if secret is not None:
            stored = secret.record_key(key)
            if v1:
                data = sealed_v1(secret, stored, data, manifest)
            else:
                data = seal_metadata(secret, stored, data, manifest, pin=pin,
                                     links=keyed_links(ring or Keyring([secret]), links, stored))
        created = int(T0 - age_days * DAY) + created_offset
        record = Record(stored, TOY_PUBLISHER.public, data, manifest, created,
                        digest=hashlib.sha256(stored.encode() + data).digest())
        self.records.append((record, T0 - idle_days * DAY))
        return stored


def sealed_v1(secret: CacheSecret, stored: str, metadata: bytes, manifest: Manifest) -> bytes:
    """Sealed metadata version 1 (no links in the clear), as publishers wrote it before."""
    aad = (b"nixshard-sealed-metadata\n" + stored.encode()
           + hashlib.sha256(manifest.encode()).digest())
    plain = len(metadata).to_bytes(4, "big") + metadata
    return b"NXSP\x01" + secret.secret_id + seal(secret.metadata_key, plain, aad)


def plan(toy: ToyInventory, reader: LinkReader | None = toy_reader,
         max_age: float | None = 30 * DAY, max_idle: float | None = None) -> ExpiryPlan:
    return plan_records(toy.records, T0, max_age, max_idle, reader, toy.keyring)


def test_the_closure_of_what_stays_stays_and_the_rest_goes() -> None:
    toy = ToyInventory()
    a, b, c, d, e = (toy_key(x) for x in "abcde")
    toy.add(a, f"toy needs={b};label=app", 1)          # young: stays
    toy.add(b, f"toy needs={c};label=lib", 90)         # old, needed by a
    toy.add(c, "toy label=libc", 90)                   # old, needed by b
    toy.add(d, "toy label=lonely", 90)                 # old, needed only by e
    toy.add(e, f"toy needs={d},{toy_key('absent')};label=tool", 90)  # old, unreferenced
    got = plan(toy)
    assert set(got.expiring) == {d, e}
    assert got.expiring[d].startswith("age: created 90.0 d ago")
    assert {k: r.why for k, r in got.retained.items()} == {
        b: "referenced by app", c: "referenced by lib"}
    assert got.retained[b].expiry.startswith("age: ") and got.retained[b].label == "lib"
    assert got.needs_of(e) == [d], "a key the inventory lacks is no need"
    assert got.closure and not got.unread and not got.pins


def test_without_a_reader_the_rule_alone_decides() -> None:
    toy = ToyInventory()
    a, b = toy_key("a"), toy_key("b")
    toy.add(a, f"toy needs={b}", 1)
    toy.add(b, "toy", 90)
    got = plan(toy, reader=None)
    assert set(got.expiring) == {b} and not got.retained and not got.closure


def test_records_the_reader_does_not_know_follow_the_rule() -> None:
    toy = ToyInventory()
    log, young = toy_key("log"), toy_key("young")
    toy.add(log, "a build log", 90)
    toy.add(young, "something else", 1)
    got = plan(toy)
    assert set(got.expiring) == {log}


def test_idle_records_needed_by_a_read_one_stay() -> None:
    toy = ToyInventory()
    top, dep, other = toy_key("top"), toy_key("dep"), toy_key("other")
    toy.add(top, f"toy needs={dep};label=top", 100, idle_days=0.1)
    toy.add(dep, "toy label=dep", 100, idle_days=50)
    toy.add(other, "toy label=other", 100, idle_days=50)
    got = plan(toy, max_age=None, max_idle=30 * DAY)
    assert set(got.expiring) == {other} and got.expiring[other].startswith("idle: last read 50.0")
    assert got.retained[dep].why == "referenced by top"
    assert got.retained[dep].expiry.startswith("idle: ")


def test_pins_keep_their_closure_and_never_expire() -> None:
    toy = ToyInventory()
    pin, rel, dep, spare = (toy_key(x) for x in ("pin", "rel", "dep", "spare"))
    toy.add(pin, f"toy pin=release;needs={rel},{toy_key('gone')};label=pin release", 400)
    toy.add(rel, f"toy needs={dep};label=rel", 90)
    toy.add(dep, "toy label=dep", 90)
    toy.add(spare, "toy label=spare", 90)
    got = plan(toy)
    assert set(got.expiring) == {spare}
    assert {k: r.why for k, r in got.retained.items()} == {
        pin: "a pin (release): pins do not expire",
        rel: "pinned by release",
        dep: "pinned by release (referenced by rel)"}
    (summary,) = got.pins
    assert (summary.name, summary.key, summary.paths, summary.closure) == ("release", pin, 2, 2)


def test_of_two_pins_of_one_name_the_newest_counts_and_an_empty_pin_ages_out() -> None:
    toy = ToyInventory()
    old_pin, new_pin, empty = toy_key("old-pin"), toy_key("new-pin"), toy_key("empty")
    was, now = toy_key("was-pinned"), toy_key("is-pinned")
    toy.add(old_pin, f"toy pin=main;needs={was}", 50)
    toy.add(new_pin, f"toy pin=main;needs={now}", 40)
    toy.add(empty, "toy pin=gone", 40)
    toy.add(was, "toy", 90)
    toy.add(now, "toy", 90)
    got = plan(toy)
    assert set(got.expiring) == {old_pin, empty, was}
    assert got.retained[now].why == "pinned by main"
    assert [p.key for p in got.pins] == [new_pin]


def test_a_pin_wins_over_a_reference_as_the_reason() -> None:
    """dep is one step from a young record and two from the pin: it says pinned."""
    toy = ToyInventory()
    pin, top, rel, dep = (toy_key(x) for x in ("pin2", "top2", "rel2", "dep2"))
    toy.add(top, f"toy needs={dep};label=top", 1)
    toy.add(pin, f"toy pin=p;needs={rel}", 1)
    toy.add(rel, f"toy needs={dep};label=rel", 90)
    toy.add(dep, "toy label=dep", 90)
    assert plan(toy).retained[dep].why == "pinned by p (referenced by rel)"


def test_a_private_closure_maps_plain_keys_to_every_secret_and_flags_what_does_not_open(
) -> None:
    old, new = CacheSecret.generate("old-1"), CacheSecret.generate("new-1")
    toy = ToyInventory(Keyring([new, old]))
    dep = toy.add("dep", "toy label=dep", 90, secret=old)              # sealed before rotation
    top = toy.add("top", "toy needs=dep;label=top", 1, secret=new)
    spare = toy.add("spare", "toy label=spare", 90, secret=new)
    foreign = toy.add("foreign", "toy needs=spare", 1, secret=CacheSecret.generate("other-1"))
    gone = toy.add("gone", "toy", 90, secret=CacheSecret.generate("other-2"))
    got = plan(toy)
    assert got.retained[dep].why == "referenced by top"
    assert set(got.expiring) == {spare, gone}
    assert set(got.unread) == {foreign}, "a kept record that does not open: closure unknown"
    assert "keyring does not hold" in got.unread[foreign]
    assert top not in got.expiring and top not in got.retained


def test_with_the_keyring_the_pin_under_the_newest_secret_counts() -> None:
    """After a rotation a pin change writes the pin under the new secret, then empties
    its version under the old one (a later ``created``): readers see the new one, and
    so does gc."""
    old, new = CacheSecret.generate("old-3"), CacheSecret.generate("new-3")
    toy = ToyInventory(Keyring([new, old]))
    rel = toy.add("rel", "toy label=rel", 90, secret=old)
    was = toy.add("was", "toy label=was", 90, secret=old)
    current = toy.add("pin", "toy pin=main;needs=rel", 10, secret=new)
    emptied = toy.add("pin", "toy pin=main", 10, secret=old, created_offset=1)
    got = plan(toy)
    assert got.retained[rel].why == "pinned by main"
    assert [p.key for p in got.pins] == [current]
    assert set(got.expiring) == {was}, "the emptied pin is young; was is pinned by nothing"
    assert got.needs_of(emptied) == []


def test_without_the_keyring_a_private_closure_is_read_from_public_links() -> None:
    """No secret at all: needs are the keyed keys records carry, pins their flag; a
    reference sealed before a rotation is found through the key under the old secret."""
    old, new = CacheSecret.generate("old-2"), CacheSecret.generate("new-2")
    before, after = Keyring([old]), Keyring([new, old])
    toy = ToyInventory(keyring=None)
    base = toy.add("base", "hidden", 90, secret=old, ring=before)
    dep = toy.add("dep", "hidden", 90, secret=old, ring=before, links=("base", "dep"))
    top = toy.add("top", "hidden", 1, secret=new, ring=after, links=("dep", "absent"))
    lonely = toy.add("lonely", "hidden", 90, secret=old, ring=before, links=("base",))
    rel_dep = toy.add("rel-dep", "hidden", 90, secret=old, ring=before)
    rel = toy.add("rel", "hidden", 90, secret=old, ring=before, links=("rel-dep",))
    pin = toy.add("pin", "hidden", 400, secret=new, ring=after, links=("rel",), pin=True)
    emptied = toy.add("emptied-pin", "hidden", 90, secret=old, ring=before)
    got = plan(toy, reader=record_links)
    assert set(got.expiring) == {lonely, emptied}
    assert {k: r.why for k, r in got.retained.items()} == {
        dep: f"referenced by {top}", base: f"referenced by {dep}",
        pin: f"a pin ({pin}): pins do not expire",
        rel: f"pinned by {pin}", rel_dep: f"pinned by {pin} (referenced by {rel})"}
    assert got.needs_of(top) == [dep], "the key under the new secret matches nothing: harmless"
    assert got.needs_of(dep) == [base], "its own key is no need"
    assert got.table.label(top) == top and not got.unread
    (summary,) = got.pins
    assert (summary.name, summary.key, summary.paths, summary.closure) == (pin, pin, 2, 2)
    assert plan(toy, reader=sealed_record_links).expiring == got.expiring


def test_without_the_keyring_a_version_1_record_that_stays_leaves_the_closure_unknown(
) -> None:
    secret = CacheSecret.generate("v1-1")
    toy = ToyInventory(keyring=None)
    young = toy.add("young", "hidden", 1, secret=secret, v1=True)
    old_v1 = toy.add("old-v1", "hidden", 90, secret=secret, v1=True)
    old = toy.add("old", "hidden", 90, secret=secret)
    got = plan(toy, reader=record_links)
    assert set(got.expiring) == {old_v1, old}, "what it needs is unknown, it is not kept"
    assert set(got.unread) == {young}
    assert "sealed metadata version 1 carries no links" in got.unread[young]
    # with the keyring the same records open: the young one needs nothing known
    ring = ToyInventory(Keyring([secret]))
    ring.records = toy.records
    assert not plan(ring).unread


def test_nix_records_carry_the_links_their_metadata_says() -> None:
    """What a private record writes in the clear is what record_links reads from its
    opened metadata: References (itself left out), a realisation's output and
    dependencies."""
    base, lib, app = (store_path(n, name) for n, name in
                      ((91, "base-1"), (92, "lib-1"), (93, "app-1")))
    narinfo = new_narinfo(app, bytes(32), 1, Manifest("isa_l_rs_cauchy", K, M, ()),
                          references=[app.path, lib.path, base.path])
    content = narinfo_record(narinfo)
    assert content.links == tuple(sorted((lib.hash_part, base.hash_part))) and not content.pin
    record = Record(content.key, TOY_PUBLISHER.public, content.metadata,
                    Manifest("isa_l_rs_cauchy", K, M, ()), int(T0), digest=bytes(32))
    links = record_links(record)
    assert links is not None and links.needs == frozenset(content.links)

    dep_id = DrvOutput(bytes([1]) * 32, "out")
    real = Realisation.new(DrvOutput(bytes([2]) * 32, "out"), app, (), {dep_id: lib})
    content = realisation_record(real)
    assert set(content.links) == {app.hash_part, lib.hash_part, realisation_record_key(dep_id)}
    record = Record(content.key, TOY_PUBLISHER.public, content.metadata,
                    Manifest("isa_l_rs_cauchy", K, M, ()), int(T0), digest=bytes(32))
    links = record_links(record)
    assert links is not None and links.needs == frozenset(content.links)
    assert links.label == f"realisation {real.id.text()}" and links.pin is None


# --- real nodes: hand-made narinfos ------------------------------------------------------


async def gc(net: NetworkClient, publisher: Publisher, *, max_age: float | None = None,
             max_idle: float | None = None, dry_run: bool = False,
             force: bool = False) -> GcReport:
    return await collect_garbage(net, publisher, max_age=max_age, max_idle=max_idle,
                                 grace=0.0, dry_run=dry_run, force=force, links=record_links)


async def held_shards(net: NetworkClient) -> set[str]:
    return {s.id for client in net.nodes.values() for s in await client.list_shards()}


def record_files(local: LocalNetwork, key: str) -> list[Path]:
    paths = [local.node_dir(i) / "records" / key for i in range(1, NODES + 1)]
    return [p for p in paths if p.exists()]


def make_idle(local: LocalNetwork, key: str, days: float) -> None:
    """Set the last read of every copy of ``key`` to ``days`` ago."""
    then = time.time() - days * DAY
    files = record_files(local, key)
    assert files
    for path in files:
        os.utime(path, (then, path.stat().st_mtime))


def ours(report: GcReport, *paths: StorePath) -> dict[str, str]:
    """Among ``paths``: hash part -> "expired: <reason>" or "kept: <why>"."""
    keys = {p.hash_part for p in paths}
    got = {e.key: f"expired: {e.reason}" for e in report.expired if e.key in keys}
    got.update({r.key: f"kept: {r.why}" for r in report.retained if r.key in keys})
    return got


async def test_gc_keeps_a_dependency_of_a_kept_path_and_removes_an_unreferenced_one(
        net: NetworkClient, publisher: Publisher) -> None:
    """The acceptance test: by age, the old dependency (and its own dependency) of a young
    path stays; an old path nothing keeps goes, with its shards."""
    base = store_path(101, "glibc-2.40")
    lib = store_path(102, "libfoo-1.0")
    app = store_path(103, "app-2.0")
    lonely = store_path(104, "old-tool-0.9")
    man_base = await publish_path(net, publisher, base, (base,), seed=101, age=40 * DAY)
    man_lib = await publish_path(net, publisher, lib, (base, lib), seed=102, age=40 * DAY)
    await publish_path(net, publisher, app, (lib,), seed=103)
    man_lonely = await publish_path(net, publisher, lonely, (base,), seed=104, age=40 * DAY)

    dry = await gc(net, publisher, max_age=30 * DAY, dry_run=True)
    assert ours(dry, base, lib, app, lonely) == {
        base.hash_part: f"kept: referenced by {lib.basename}",
        lib.hash_part: f"kept: referenced by {app.basename}",
        lonely.hash_part: "expired: age: created 40.0 d ago (max 30.0 d)"}
    (gone,) = [e for e in dry.expired if e.key == lonely.hash_part]
    assert gone.label == lonely.basename and dry.closure

    real = await gc(net, publisher, max_age=30 * DAY)
    assert ours(real, base, lib, app, lonely) == ours(dry, base, lib, app, lonely)
    with pytest.raises(NotFoundError):
        await fetch_record(net, lonely.hash_part)
    for path in (base, lib, app):
        await fetch_record(net, path.hash_part)
    after = await held_shards(net)
    assert stripe_ids(man_base) | stripe_ids(man_lib) <= after
    assert not stripe_ids(man_lonely) & after, "the unreferenced path left shards behind"


async def test_without_links_the_same_gc_would_break_the_closure(
        net: NetworkClient, publisher: Publisher) -> None:
    """The seam is what keeps the dependency: with no link reader it expires."""
    dep, top = store_path(111, "dep-1"), store_path(112, "top-1")
    await publish_path(net, publisher, dep, seed=111, age=40 * DAY)
    await publish_path(net, publisher, top, (dep,), seed=112)
    report = await collect_garbage(net, publisher, max_age=30 * DAY, max_idle=None,
                                   grace=DAY, dry_run=True)
    assert dep.hash_part in {e.key for e in report.expired} and not report.closure


async def test_by_last_read_an_idle_dependency_of_a_read_path_stays(
        net: NetworkClient, publisher: Publisher, local: LocalNetwork) -> None:
    dep, top, unread = (store_path(121, "dep-2"), store_path(122, "top-2"),
                        store_path(123, "unread-2"))
    await publish_path(net, publisher, dep, seed=121)
    await publish_path(net, publisher, top, (dep,), seed=122)
    await publish_path(net, publisher, unread, (dep,), seed=123)
    for path in (dep, top, unread):
        make_idle(local, path.hash_part, 2)
    await fetch_record(net, top.hash_part)  # a reader: moves the last read of top

    report = await gc(net, publisher, max_idle=DAY)

    assert ours(report, dep, top, unread) == {
        dep.hash_part: f"kept: referenced by {top.basename}",
        unread.hash_part: "expired: idle: last read 2.0 d ago (max 1.0 d)"}
    await fetch_record(net, dep.hash_part)
    with pytest.raises(NotFoundError):
        await fetch_record(net, unread.hash_part)


async def test_a_pinned_closure_survives_until_unpinned(
        net: NetworkClient, publisher: Publisher) -> None:
    dep, rel, old_rel = (store_path(131, "dep-3"), store_path(132, "release-3"),
                         store_path(133, "release-2"))
    man_dep = await publish_path(net, publisher, dep, seed=131, age=40 * DAY)
    await publish_path(net, publisher, rel, (dep,), seed=132, age=40 * DAY)
    await publish_path(net, publisher, old_rel, (dep,), seed=133, age=40 * DAY)
    await pin_paths(net, publisher, "gc-test/release", [old_rel.path])
    change = await pin_paths(net, publisher, "gc-test/release", [rel.path], keep=1)
    assert change.dropped == (old_rel.path,)

    report = await gc(net, publisher, max_age=30 * DAY)

    assert ours(report, dep, rel, old_rel) == {
        rel.hash_part: "kept: pinned by gc-test/release",
        dep.hash_part: f"kept: pinned by gc-test/release (referenced by {rel.basename})",
        old_rel.hash_part: "expired: age: created 40.0 d ago (max 30.0 d)"}
    (pin,) = [p for p in report.pins if p.name == "gc-test/release"]
    assert (pin.paths, pin.closure) == (1, 2)
    assert stripe_ids(man_dep) <= await held_shards(net)

    await unpin(net, publisher, "gc-test/release")
    report = await gc(net, publisher, max_age=30 * DAY)
    assert set(ours(report, dep, rel)) == {dep.hash_part, rel.hash_part}
    assert all(v.startswith("expired: age") for v in ours(report, dep, rel).values())
    assert not stripe_ids(man_dep) & await held_shards(net)
    assert "gc-test/release" not in {p.name for p in report.pins}


async def test_a_referrer_whose_deletion_fails_keeps_what_it_needs(
        net: NetworkClient, publisher: Publisher, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both are due; a newer version of the referrer lands on its arbiter before the
    tombstone: the referrer stays, so its dependency (deleted after it) stays too."""
    dep, top = store_path(141, "dep-4"), store_path(142, "top-4")
    await publish_path(net, publisher, dep, seed=141, age=40 * DAY)
    manifest = await publish_path(net, publisher, top, (dep,), seed=142, age=40 * DAY)
    fresh_record = await fetch_record(net, top.hash_part)
    fresh = seal_record(publisher, top.hash_part, fresh_record.metadata, manifest,
                        created=int(time.time()) + 60)
    arbiter = net.nodes[record_nodes(net.network.nodes, top.hash_part)[0].id]
    original = arbiter.put_record
    order: list[str] = []

    async def replaced_first(key: str, data: bytes, signer: Publisher) -> int:
        order.append(key)
        if key == top.hash_part:
            await original(key, fresh, signer)  # a push landed meanwhile
        return await original(key, data, signer)

    monkeypatch.setattr(arbiter, "put_record", replaced_first)
    report = await gc(net, publisher, max_age=30 * DAY)
    monkeypatch.undo()

    assert ours(report, dep, top) == {
        dep.hash_part: f"kept: referenced by {top.basename}, whose deletion failed"}
    assert {k.reason for k in report.kept_records if k.key == top.hash_part} == {
        "a newer version was written since it was read"}
    assert dep.hash_part not in order, "the dependency was deleted before its referrer"
    await fetch_record(net, dep.hash_part)


async def test_an_unreadable_record_stops_expiry_unless_forced(
        net: NetworkClient, publisher: Publisher, local: LocalNetwork) -> None:
    victim = store_path(151, "victim-5")
    await publish_path(net, publisher, victim, seed=151, age=40 * DAY)
    junk = local.node_dir(1) / "records" / store_path(152, "junk").hash_part
    junk.write_bytes(b"not a record")
    try:
        report = await gc(net, publisher, max_age=30 * DAY)
        assert victim.hash_part not in {e.key for e in report.expired}
        assert any(s.startswith("no record expired") for s in report.skipped), report.skipped
        await fetch_record(net, victim.hash_part)
        forced = await gc(net, publisher, max_age=30 * DAY, force=True)
        assert victim.hash_part in {e.key for e in forced.expired}
        assert "closure incomplete, expiring anyway (--force)" in forced.skipped
    finally:
        junk.unlink()


# --- the command line on a private network ------------------------------------------------


@pytest.fixture(scope="module")
def private_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNetwork, Path]]:
    """A started private 6-node network and its publisher's secret-key file."""
    with keyed_network(tmp_path_factory.mktemp("gc-closure-private"), "gc-closure-1",
                       private=True) as net:
        yield net


ROTATED = CacheSecret.generate("gc-closure-new-1")
"""The secret the private network's keyring is rotated to (the tests below hold it)."""


def private_client(local: LocalNetwork, keyring: Keyring | None) -> NetworkClient:
    assert local.network is not None
    return NetworkClient(local.network, timeout=10.0, keyring=keyring)


def put_v1_record(net: NetworkClient, publisher: Publisher, path: StorePath,
                  *, age: float) -> tuple[str, bytes]:
    """A record sealed as before links were public (version 1), of no payload: its keyed
    key and signed bytes."""
    assert net.keyring is not None
    secret = net.keyring.current
    key = secret.record_key(path.hash_part)
    manifest = Manifest(net.network.codec, net.network.k, net.network.m, (), sealed=True)
    metadata = sealed_v1(secret, key, f"StorePath: {path.path}\n".encode(), manifest)
    return key, seal_record(publisher, key, metadata, manifest, created=int(time.time() - age))


def test_private_gc_without_the_secret_keeps_closures_across_a_rotation(
        private_net: tuple[LocalNetwork, Path], tmp_path: Path) -> None:
    """A kept record's dependency stays, an unreferenced record goes, a pin keeps its
    closure: all read from the keyed links records carry, with no secret anywhere;
    dependencies and a pin's paths were sealed under the secret before a rotation."""
    local, key_file = private_net
    assert local.keyring is not None
    old = local.keyring
    rotated = Keyring([ROTATED, *old])
    dep, top, lonely = (store_path(161, "dep-6"), store_path(162, "top-6"),
                        store_path(163, "lonely-6"))
    rel_dep, rel = store_path(164, "rel-dep-6"), store_path(165, "release-6")
    pin_name = "gc-closure/private"

    async def setup() -> None:
        async with private_client(local, old) as net:  # before the rotation
            await publish_path(net, local.publisher, dep, seed=161, age=40 * DAY)
            await publish_path(net, local.publisher, lonely, seed=163, age=40 * DAY)
            await publish_path(net, local.publisher, rel_dep, seed=164, age=40 * DAY)
            await publish_path(net, local.publisher, rel, (rel_dep,), seed=165, age=40 * DAY)
            await pin_paths(net, local.publisher, pin_name, [rel.path])
        async with private_client(local, rotated) as net:
            await publish_path(net, local.publisher, top, (dep,), seed=162)
            # the pin changes after the rotation: written under the new secret, and its
            # version under the old one emptied (it would otherwise pin for ever)
            await pin_paths(net, local.publisher, pin_name, [rel.path])

    asyncio.run(setup())
    new_pin = rotated.current.record_key(pin_record_key(pin_name))
    old_pin = old[0].record_key(pin_record_key(pin_name))
    keyed = {old[0].record_key(p.hash_part): p for p in (dep, lonely, rel_dep, rel)}
    top_key = rotated.current.record_key(top.hash_part)

    async def api_dry_run() -> GcReport:
        async with private_client(local, None) as bare:
            return await gc(bare, local.publisher, max_age=30 * DAY, dry_run=True)

    dry = asyncio.run(api_dry_run())
    assert dry.closure and not [s for s in dry.skipped if "no record expired" in s]

    args = ["--network", str(local.network_file), "--signing-key", str(key_file),
            "--grace", "0s"]
    runner = CliRunner(env={"NIXSHARD_CACHE_SECRET": ""})
    text = runner.invoke(gc_command, [*args, "--max-age", "30d", "--dry-run"])
    assert text.exit_code == 0, text.output
    assert "read without the cache secret" in text.output

    keyring_file = tmp_path / "cache.keyring"
    keyring_file.write_text(rotated.text())
    named = runner.invoke(gc_command, [*args, "--max-age", "30d", "--dry-run", "--json",
                                       "--cache-secret", str(keyring_file)])
    assert named.exit_code == 0, named.output
    with_secret = json.loads(named.stdout)

    done = runner.invoke(gc_command, [*args, "--max-age", "30d", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["closure_checked"] is True and report["skipped"] == [], report
    for field in ("expired_records", "retained_records"):  # the secret only names them
        assert ({r["key"] for r in with_secret[field] if r["key"] in keyed}
                == {r["key"] for r in report[field] if r["key"] in keyed})
    assert {r["label"] for r in with_secret["retained_records"] if r["key"] in keyed} == {
        dep.basename, rel.basename, rel_dep.basename}
    retained = {r["key"]: r for r in report["retained_records"] if r["key"] in keyed}
    expired = {e["key"]: e for e in report["expired_records"] if e["key"] in keyed}
    assert {k: keyed[k] for k in expired} == {old[0].record_key(lonely.hash_part): lonely}
    assert {keyed[k]: r["kept_because"] for k, r in retained.items()} == {
        dep: f"referenced by {top_key}",
        rel: f"pinned by {new_pin}",
        rel_dep: f"pinned by {new_pin} (referenced by {old[0].record_key(rel.hash_part)})"}
    assert all(r["label"] == r["key"] for r in retained.values()), "no secret: keyed keys"
    pins = {p["key"]: p for p in report["pins"]}
    assert new_pin in pins and old_pin not in pins, "the old version was emptied"
    assert pins[new_pin]["closure_records"] == 2

    async def check() -> None:
        async with private_client(local, rotated) as net:
            for path in (dep, top, rel, rel_dep):
                await fetch_record(net, path.hash_part)
            with pytest.raises(NotFoundError):
                await fetch_record(net, lonely.hash_part)

    asyncio.run(check())


def test_private_gc_without_the_secret_stops_at_a_version_1_record_and_the_secret_reads_it(
        private_net: tuple[LocalNetwork, Path], tmp_path: Path) -> None:
    """A record that stays, sealed before links were public, hides what it needs: nothing
    expires without the secret unless --force; with the secret the closure is read."""
    local, key_file = private_net
    assert local.keyring is not None
    ring = local.keyring
    young, victim = store_path(171, "young-v1-7"), store_path(172, "victim-7")

    async def setup() -> str:
        async with private_client(local, ring) as net:
            await publish_path(net, local.publisher, victim, seed=172, age=40 * DAY)
            key, data = put_v1_record(net, local.publisher, young, age=0)
            for node in record_nodes(net.network.nodes, key)[:net.network.record_replicas]:
                await net.nodes[node.id].put_record(key, data, local.publisher)
            return key

    young_key = asyncio.run(setup())
    victim_key = ring.current.record_key(victim.hash_part)
    args = ["--network", str(local.network_file), "--signing-key", str(key_file),
            "--grace", "0s", "--max-age", "30d", "--dry-run"]
    runner = CliRunner(env={"NIXSHARD_CACHE_SECRET": ""})
    stopped = runner.invoke(gc_command, args)
    assert stopped.exit_code == 0, stopped.output
    assert f"record {young_key}: what it references could not be read" in stopped.output
    assert "sealed metadata version 1 carries no links" in stopped.output
    assert "no record expired" in stopped.output
    assert f"would expire record {victim_key}" not in stopped.output
    assert "read without the cache secret" in stopped.output

    forced = runner.invoke(gc_command, [*args, "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    assert victim_key in {e["key"] for e in json.loads(forced.stdout)["expired_records"]}

    keyring_file = tmp_path / "cache.keyring"
    keyring_file.write_text(Keyring([ROTATED, *ring]).text())  # every secret of the network
    opened = runner.invoke(gc_command, [*args, "--json", "--cache-secret", str(keyring_file)])
    assert opened.exit_code == 0, opened.output
    report = json.loads(opened.stdout)
    assert not [s for s in report["skipped"] if "no record expired" in s], report
    (gone,) = [e for e in report["expired_records"] if e["key"] == victim_key]
    assert gone["label"] == victim.basename, "with the secret, records are named"
    for path in record_files(local, young_key):  # the next collection sees no version 1
        path.unlink()


# --- the real nix: a built closure, pushed --------------------------------------------------


@pytest.fixture(scope="module")
def nix_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNetwork, Path]]:
    """A started 6-node network whose publisher key is also a Nix signing key file."""
    with keyed_network(tmp_path_factory.mktemp("gc-closure-nix"), "gc-closure-nix-1") as net:
        yield net


def nix_out(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True,
                          env=env_with_nix_config()).stdout


@pytest.mark.nix
def test_real_nix_closure_idle_dependencies_stay_pins_keep_everything(
        nix_net: tuple[LocalNetwork, Path], tmp_path: Path) -> None:
    local, key_file = nix_net
    (top,) = build_closure(f"gc-closure-{os.getpid()}-{time.time_ns()}")
    closure = json.loads(nix_out("nix", "path-info", "--json", "--recursive", top))
    entries = closure.items() if isinstance(closure, dict) else (
        (e["path"], e) for e in closure)
    refs = {path: [r for r in entry["references"] if r != path] for path, entry in entries}
    assert len(refs) == 3 and len(refs[top]) == 2, refs
    tree = tmp_path / "nixshard-gc-closure-victim"
    tree.mkdir()
    (tree / "data").write_bytes(os.urandom(50_000))
    victim = nix_out("nix-store", "--add", str(tree)).strip()
    network = ["--network", str(local.network_file)]
    pushed = local.run_nixshard("push", *network, "--signing-key", str(key_file),
                                "--no-progress", top, victim, env=env_with_nix_config())
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    key = {p: StorePath.parse(p).hash_part for p in [*refs, victim]}
    for path in key:
        make_idle(local, key[path], 2)

    async def read_top() -> None:
        assert local.network is not None
        async with NetworkClient(local.network) as net:
            await fetch_record(net, key[top])

    asyncio.run(read_top())
    args = [*network, "--signing-key", str(key_file), "--grace", "0s", "--json"]
    res = CliRunner().invoke(gc_command, [*args, "--max-idle", "1d"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert [e["key"] for e in report["expired_records"]] == [key[victim]], report
    retained = {r["key"]: r["kept_because"] for r in report["retained_records"]}
    deps = [p for p in refs if p != top]
    assert set(retained) == {key[p] for p in deps}, report
    assert all(why.startswith("referenced by ") for why in retained.values())

    # a pin on the top keeps the whole closure, everything idle (pinning reads the top)
    pinned = CliRunner().invoke(pin_group, ["add", *network, "--signing-key", str(key_file),
                                            "gc-closure/top", top])
    assert pinned.exit_code == 0, pinned.output
    make_idle(local, key[top], 2)
    res = CliRunner().invoke(gc_command, [*args, "--max-idle", "1d"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["expired_records"] == [], report
    retained = {r["key"]: r["kept_because"] for r in report["retained_records"]}
    assert retained[key[top]] == "pinned by gc-closure/top"
    assert {key[p] for p in deps} <= set(retained)
    assert all(retained[key[p]].startswith("pinned by gc-closure/top") for p in deps)
    dry_text = CliRunner().invoke(gc_command, [*args[:-1], "--max-idle", "1d", "--dry-run"])
    assert "pinned by gc-closure/top" in dry_text.stdout
    assert "pin gc-closure/top: 1 paths, keeps 3 records" in dry_text.stdout

"""Pins: their key, metadata and list rules; what retention reads of a record; and
pin_paths / unpin / read_pin against real nodes (a public and a private network)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

import pytest

from nix_formats import nix32
from nix_formats.store_path import StorePath
from nix_records import (
    PIN_MAGIC,
    Pin,
    PinError,
    check_pin_name,
    is_build_log,
    is_pin,
    log_metadata,
    log_record_key,
    narinfo_record,
    new_narinfo,
    pin_paths,
    pin_record_key,
    read_pin,
    record_links,
    unpin,
)
from nix_records.pins import MAX_PIN_PATHS
from nixshard.localnet import LocalNetwork, new_publisher
from storage_network import Manifest, NetworkClient, NotFoundError, Record, fetch_record
from tests.support.network import NODES, SMALL_CHUNKS, K, M, running_network
from tests.support.records import publish_path, store_path

PUBLISHER = new_publisher("pins-unit-1")[0]
A, B, C, D = (store_path(900 + i, f"p{i}").path for i in range(4))


def record(metadata: bytes, key: str = "1" * 32) -> Record:
    return Record(key, PUBLISHER.public, metadata, Manifest("isa_l_rs_cauchy", K, M, ()), 0)


# --- names, keys, metadata -----------------------------------------------------------


def test_pin_record_key_is_32_nix32_characters_of_its_own() -> None:
    key = pin_record_key("release")
    assert len(key) == 32 and set(key) <= set(nix32.ALPHABET)
    assert key == pin_record_key("release") != pin_record_key("release2")
    assert key != log_record_key("release")
    assert Pin("release").key == key


@pytest.mark.parametrize("name", ["release", "ci/main", "v24.05+1", "a", "x" * 128, "me@host"])
def test_pin_names_accepted(name: str) -> None:
    assert check_pin_name(name) == name


@pytest.mark.parametrize("name", ["", "-lead", ".hidden", "/abs", "has space", "x" * 129,
                                  "semi;colon", "é"])
def test_pin_names_refused(name: str) -> None:
    with pytest.raises(PinError, match="is not a pin name"):
        check_pin_name(name)


def test_metadata_round_trip_and_shape() -> None:
    pin = Pin("main", (A, B), 3)
    data = pin.metadata()
    assert data.startswith(PIN_MAGIC) and is_pin(data) and not is_build_log(data)
    assert json.loads(data[len(PIN_MAGIC):]) == {"name": "main", "paths": [A, B], "keep": 3}
    assert Pin.from_metadata(data) == pin
    assert Pin.from_metadata(Pin("empty").metadata()) == Pin("empty", (), None)
    assert not is_pin(f"StorePath: {A}\n".encode()) and not is_pin(log_metadata("x"))


@pytest.mark.parametrize(("body", "match"), [
    (b"not json", "not UTF-8 JSON"),
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[]", "want a JSON object"),
    (b'{"name": "x", "paths": []}', "want a JSON object"),
    (b'{"name": "x", "paths": [], "keep": null, "more": 1}', "want a JSON object"),
    (b'{"name": 1, "paths": [], "keep": null}', "name must be a string"),
    (b'{"name": "x", "paths": "p", "keep": null}', "paths a list of strings"),
    (b'{"name": "x", "paths": [], "keep": true}', "keep an integer"),
    (b'{"name": "x", "paths": [], "keep": 0}', "keep must be at least 1"),
    (b'{"name": "x y", "paths": [], "keep": null}', "is not a pin name"),
    (b'{"name": "x", "paths": ["/tmp/a"], "keep": null}', "cannot pin '/tmp/a'"),
    (json.dumps({"name": "x", "paths": [A, A], "keep": None}).encode(), "listed twice"),
    (json.dumps({"name": "x", "paths": [A, B], "keep": 1}).encode(), "more than 1"),
])
def test_malformed_pin_metadata_is_refused(body: bytes, match: str) -> None:
    with pytest.raises(PinError, match=match):
        Pin.from_metadata(PIN_MAGIC + body)


def test_no_magic_is_no_pin() -> None:
    with pytest.raises(PinError, match="no pin magic"):
        Pin.from_metadata(b'{"name": "x"}')


def test_a_pin_holds_at_most_max_pin_paths() -> None:
    many = tuple(store_path(i, "many").path for i in range(MAX_PIN_PATHS + 1))
    with pytest.raises(PinError, match=f"more than {MAX_PIN_PATHS}"):
        Pin("big", many)


# --- adding and removing paths ---------------------------------------------------------


def test_added_paths_go_first_and_keep_drops_the_oldest() -> None:
    pin, dropped = Pin("main").with_added([A])
    assert pin == Pin("main", (A,), None) and dropped == ()
    pin, dropped = pin.with_added([B, C], keep=2)
    assert pin == Pin("main", (B, C), 2) and dropped == (A,)
    pin, dropped = pin.with_added([D])  # the limit stays
    assert pin.paths == (D, B) and dropped == (C,)
    pin, dropped = pin.with_added([B])  # already held: to the front, nothing dropped
    assert pin.paths == (B, D) and dropped == ()
    pin, dropped = pin.with_added([A], keep=1)
    assert pin == Pin("main", (A,), 1) and dropped == (B, D)
    with pytest.raises(PinError, match="no store path"):
        pin.with_added([])
    with pytest.raises(PinError, match="cannot pin 'result'"):
        pin.with_added(["result"])


def test_without_a_path_or_every_path() -> None:
    pin = Pin("main", (A, B), 5)
    assert pin.without(A) == Pin("main", (B,), 5)
    assert pin.without(None) == Pin("main", (), 5)
    with pytest.raises(PinError, match=f"pin main does not hold {C}"):
        pin.without(C)


# --- what retention reads --------------------------------------------------------------


def narinfo_metadata(path: StorePath, refs: list[StorePath]) -> bytes:
    manifest = Manifest("isa_l_rs_cauchy", K, M, ())
    narinfo = new_narinfo(path, hashlib.sha256(b"x").digest(), 112, manifest,
                          references=[r.path for r in refs])
    return narinfo_record(narinfo).metadata


def test_record_links_of_a_narinfo_a_pin_and_others() -> None:
    top, dep1, dep2 = store_path(1, "top"), store_path(2, "dep1"), store_path(3, "dep2")
    links = record_links(record(narinfo_metadata(top, [top, dep1, dep2]), top.hash_part))
    assert links is not None
    assert links.needs == {dep1.hash_part, dep2.hash_part}, "a self-reference is no need"
    assert links.pin is None and links.label == top.basename
    leaf = record_links(record(narinfo_metadata(dep1, []), dep1.hash_part))
    assert leaf is not None and leaf.needs == frozenset()

    pinned = record_links(record(Pin("rel", (top.path, dep1.path)).metadata()))
    assert pinned is not None
    assert (pinned.needs, pinned.pin, pinned.label) == (
        frozenset({top.hash_part, dep1.hash_part}), "rel", "pin rel")
    emptied = record_links(record(Pin("rel").metadata()))
    assert emptied is not None and emptied.pin == "rel" and not emptied.needs

    assert record_links(record(log_metadata(f"{top.hash_part}-top.drv"))) is None
    assert record_links(record(PIN_MAGIC + b"{broken")) is None
    assert record_links(record(b"meta")) is None
    assert record_links(record(b"\xff\xfe not utf-8")) is None
    assert record_links(record(b"StorePath: /nix/store/short\n")) is None


# --- against real nodes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with running_network(tmp_path_factory.mktemp("pins")) as net:
        yield net


@pytest.fixture(scope="module")
def private_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    local = LocalNetwork(tmp_path_factory.mktemp("pins-private"), new_publisher("pins-p-1")[0])
    try:
        local.start_nodes(NODES, K, M, SMALL_CHUNKS, private=True)
        yield local
    finally:
        local.close()


def client(local: LocalNetwork, private: bool = False) -> NetworkClient:
    assert local.network is not None
    return NetworkClient(local.network, timeout=10.0,
                         keyring=local.keyring if private else None)


async def test_pin_add_list_and_remove(local: LocalNetwork) -> None:
    paths = [store_path(910 + i, f"rel-{i}") for i in range(3)]
    async with client(local) as net:
        for i, path in enumerate(paths):
            await publish_path(net, local.publisher, path, seed=910 + i, size=5_000)
        assert await read_pin(net, "pins/main") is None

        first = await pin_paths(net, local.publisher, "pins/main", [paths[0].path], keep=2)
        assert first.before is None and first.after == Pin("pins/main", (paths[0].path,), 2)
        assert first.record_bytes > 0
        second = await pin_paths(net, local.publisher, "pins/main", [paths[1].path])
        assert second.after.paths == (paths[1].path, paths[0].path)
        third = await pin_paths(net, local.publisher, "pins/main", [paths[2].path])
        assert third.after.paths == (paths[2].path, paths[1].path)
        assert third.dropped == (paths[0].path,)
        assert await read_pin(net, "pins/main") == third.after

        stored = await fetch_record(net, pin_record_key("pins/main"))
        assert is_pin(stored.metadata) and stored.manifest.chunks == ()

        removed = await unpin(net, local.publisher, "pins/main", paths[2].path)
        assert removed.dropped == (paths[2].path,) and removed.after.paths == (paths[1].path,)
        with pytest.raises(PinError, match=f"does not hold {paths[2].path}"):
            await unpin(net, local.publisher, "pins/main", paths[2].path)
        emptied = await unpin(net, local.publisher, "pins/main")
        assert emptied.after == Pin("pins/main", (), 2)
        assert await read_pin(net, "pins/main") == Pin("pins/main", (), 2)
        with pytest.raises(PinError, match="there is no pin named pins/main"):
            await unpin(net, local.publisher, "pins/main")
        with pytest.raises(PinError, match="there is no pin named pins/never"):
            await unpin(net, local.publisher, "pins/never")


async def test_a_change_in_the_second_of_the_last_one_is_signed_after_it(
        local: LocalNetwork) -> None:
    path = store_path(920, "same-second")
    async with client(local) as net:
        await publish_path(net, local.publisher, path, seed=920, size=5_000)
        for keep in (3, 2, 1):  # three changes back to back: each must win
            await pin_paths(net, local.publisher, "pins/fast", [path.path], keep=keep)
            assert (await read_pin(net, "pins/fast")) == Pin("pins/fast", (path.path,), keep)
        versions = await fetch_record(net, pin_record_key("pins/fast"))
        assert versions.created <= int(time.time())


async def test_pinning_refuses_paths_not_in_the_network(local: LocalNetwork) -> None:
    here, absent = store_path(930, "here"), store_path(931, "absent")
    async with client(local) as net:
        await publish_path(net, local.publisher, here, seed=930, size=5_000)
        with pytest.raises(PinError, match=f"not in the network .push them first.: "
                                           f"{absent.path}"):
            await pin_paths(net, local.publisher, "pins/check", [here.path, absent.path])
        assert await read_pin(net, "pins/check") is None
        change = await pin_paths(net, local.publisher, "pins/check", [absent.path],
                                 check_present=False)
        assert change.after.paths == (absent.path,)
        with pytest.raises(PinError, match="keep must be at least 1"):
            await pin_paths(net, local.publisher, "pins/check", [here.path], keep=0)
        with pytest.raises(PinError, match="is not a pin name"):
            await pin_paths(net, local.publisher, "bad name", [here.path])


async def test_a_private_pin_is_sealed_under_a_keyed_key(private_local: LocalNetwork) -> None:
    path = store_path(940, "private-rel")
    assert private_local.keyring is not None
    async with client(private_local, private=True) as net:
        await publish_path(net, private_local.publisher, path, seed=940, size=5_000)
        change = await pin_paths(net, private_local.publisher, "secret-pin", [path.path])
        assert await read_pin(net, "secret-pin") == change.after
    keyed = private_local.keyring.current.record_key(pin_record_key("secret-pin"))
    async with client(private_local) as bare:
        with pytest.raises(NotFoundError):
            await fetch_record(bare, pin_record_key("secret-pin"))
        sealed = await fetch_record(bare, keyed)
        assert not is_pin(sealed.metadata) and b"secret-pin" not in sealed.metadata
        assert path.hash_part.encode() not in sealed.metadata

"""The files of the network map: node key files, bootstrap files, the node's map store."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from storage_network.errors import MapError
from storage_network.network_map import (
    Bootstrap,
    SignedMap,
    bootstrap_from_map,
    load_bootstrap,
    parse_bootstrap,
)
from storage_network.wire.write_auth import Publisher
from storage_node.errors import ConfigError, Conflict, Forbidden, Unprocessable
from storage_node.identity import (
    IdentityError,
    create_identity,
    load_identity,
    load_or_create_identity,
)
from storage_node.map_store import MapStore, Outcome

from .maps import first_epoch, maintainers, next_epoch, node_entries, sign

Epoch1 = tuple[list[Publisher], SignedMap]
URLS = ["http://127.0.0.1:9301", "http://127.0.0.1:9302", "http://127.0.0.1:9303"]


def test_node_key_file(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    made, created = load_or_create_identity(path)
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded, created = load_or_create_identity(path)
    assert not created and loaded.node_id == made.node_id
    assert loaded.public_key == made.public_key
    with pytest.raises(IdentityError, match="exists already"):
        create_identity(path)


@pytest.mark.parametrize(("text", "reason"), [
    ("garbage", "not of the form name:base64"),
    ("node-x:AAAA", "3 bytes, expected 64"),
    ("x" * 5000, "larger than 4096 bytes"),
])
def test_bad_node_key_files(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "node.key"
    path.write_text(text)
    with pytest.raises(IdentityError, match=reason):
        load_identity(path)


def test_node_key_file_named_for_another_id(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    identity = create_identity(path)
    path.write_text(identity.secret_text().replace(identity.node_id, "node-1"))
    with pytest.raises(IdentityError, match=f"its key's node id is '{identity.node_id}'"):
        load_identity(path)


@pytest.fixture
def epoch1() -> Epoch1:
    keys = maintainers("m", 3)
    _, nodes = node_entries(URLS)
    return keys, sign(first_epoch(nodes, keys), keys[0], keys[1])


def test_bootstrap_round_trip(tmp_path: Path, epoch1: Epoch1) -> None:
    _, signed = epoch1
    boot = bootstrap_from_map(signed)
    path = tmp_path / "bootstrap.toml"
    path.write_text(boot.to_toml())
    again = load_bootstrap(path)
    assert (again.maintainers, again.threshold, again.urls) == (
        boot.maintainers, 2, tuple(URLS))
    with pytest.raises(MapError, match="made from epoch 1, not epoch 2"):
        bootstrap_from_map(sign(next_epoch(signed)))


@pytest.mark.parametrize(("text", "reason"), [
    ("threshold = 1\nnodes = []", "must list at least one"),
    ('maintainers = ["m:AAAA"]\nthreshold = 1', "3 bytes, expected 32"),
    ("maintainers = [1]\nthreshold = 1", "must be a string"),
    ("{KEY}\nthreshold = 2", "threshold` must be a whole number 1..1"),
    ("{KEY}\nthreshold = true", "threshold` must be a whole number"),
    ('{KEY}\nthreshold = 1\nnodes = ["s3://bucket-1/x?endpoint=http://127.0.0.1:1"]',
     "serves maps"),
    ('{KEY}\nthreshold = 1\nnodes = ["ftp://h"]', "no known scheme"),
    ("{KEY}\nthreshold = 1\nsurprise = 1", "unknown keys"),
    ("not toml [", "not valid TOML"),
])
def test_bad_bootstrap_files(text: str, reason: str) -> None:
    key = maintainers("m", 1)[0].public.text()
    with pytest.raises(MapError, match=reason):
        parse_bootstrap(text.replace("{KEY}", f'maintainers = ["{key}"]'))


def test_oversized_bootstrap_file(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text("#" * (1024 * 1024 + 1))
    with pytest.raises(MapError, match="larger than"):
        load_bootstrap(path)


async def test_map_store_keeps_the_chain_on_disk(tmp_path: Path,
                                                 epoch1: Epoch1) -> None:
    keys, signed1 = epoch1
    boot = Bootstrap(tuple(k.public for k in keys), 2, (), "test bootstrap")
    store = MapStore.open(tmp_path / "maps", bootstrap=boot)
    assert store.newest is None
    assert await store.accept(signed1) is Outcome.NEWER
    signed2 = sign(next_epoch(signed1, k=1), keys[1], keys[2])
    signed3 = sign(next_epoch(signed2), keys[0], keys[2])
    with pytest.raises(Conflict, match="needs epoch 2 before epoch 3"):
        await store.accept(signed3)
    assert await store.accept(signed2) is Outcome.NEWER
    assert await store.accept(signed2) is Outcome.HELD
    assert await store.accept(signed3) is Outcome.NEWER
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "epoch-0000000001.json", "epoch-0000000002.json", "epoch-0000000003.json"]
    assert store.read_file(2) == signed2.to_bytes()
    # reopened, it holds the same chain; a corrupt later file is ignored, not fatal
    (tmp_path / "maps" / "epoch-0000000003.json").write_bytes(b"{broken")
    again = MapStore.open(tmp_path / "maps", bootstrap=boot)
    assert again.newest == signed2 and again.oldest == signed1


async def test_map_store_fills_in_older_epochs_only_along_the_chain(
        tmp_path: Path, epoch1: Epoch1) -> None:
    keys, signed1 = epoch1
    signed2 = sign(next_epoch(signed1, k=1), keys[1], keys[2])
    store = MapStore.open(tmp_path / "maps", given=signed2)
    other1 = sign(dataclasses.replace(signed1.document, k=1), keys[0], keys[1])
    with pytest.raises(Unprocessable, match="not the previous document of the held epoch 2"):
        await store.accept(other1)
    assert await store.accept(signed1) is Outcome.FILLED
    assert store.oldest == signed1 and store.newest == signed2


async def test_map_store_refusals(tmp_path: Path, epoch1: Epoch1) -> None:
    keys, signed1 = epoch1
    bare = MapStore.open(tmp_path / "bare")
    with pytest.raises(Forbidden, match="no network map and no bootstrap"):
        await bare.accept(signed1)
    store = MapStore.open(tmp_path / "maps", given=signed1)
    weak = sign(next_epoch(signed1), keys[2])
    with pytest.raises(Unprocessable, match="has 1 valid signature"):
        await store.accept(weak)
    with pytest.raises(ConfigError, match="another document for epoch 1"):
        MapStore.open(tmp_path / "maps",
                      given=sign(dataclasses.replace(signed1.document, k=1), keys[0], keys[1]))
    with pytest.raises(ConfigError, match="does not follow the held maps"):
        MapStore.open(tmp_path / "maps", given=weak)
    other_boot = Bootstrap(tuple(k.public for k in maintainers("o", 2)), 1, (), "other")
    with pytest.raises(ConfigError, match="held epoch 1 does not match other"):
        MapStore.open(tmp_path / "maps", bootstrap=other_boot)

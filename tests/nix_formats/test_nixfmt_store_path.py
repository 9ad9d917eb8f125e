"""Store paths: parsing, rendering and every validation rule of path.cc."""

from __future__ import annotations

import pytest

from nix_formats.errors import StorePathError
from nix_formats.store_path import STORE_DIR, StorePath, parse_basename, validate_hash_part

HASH = "ggbqg8lqjwj75wznkv03h0x2bjr2in0j"


def test_parse_full_path() -> None:
    sp = StorePath.parse(f"/nix/store/{HASH}-hello-2.12.1")
    assert sp.hash_part == HASH
    assert sp.name == "hello-2.12.1"
    assert sp.basename == f"{HASH}-hello-2.12.1"
    assert sp.path == f"{STORE_DIR}/{HASH}-hello-2.12.1"
    assert str(sp) == sp.path
    assert StorePath.parse(sp.path) == sp
    assert hash(sp) == hash(StorePath(HASH, "hello-2.12.1"))


def test_parse_basename() -> None:
    sp = parse_basename(f"{HASH}-a.drv")
    assert sp == StorePath.parse_basename(f"{HASH}-a.drv") == StorePath(HASH, "a.drv")


def test_every_allowed_name_character() -> None:
    name = "AZaz09+-._?="
    assert StorePath(HASH, name).name == name


def test_other_store_dir() -> None:
    sp = StorePath.parse(f"/tmp/store/{HASH}-x", store_dir="/tmp/store")
    assert sp.in_store("/tmp/store") == f"/tmp/store/{HASH}-x"
    with pytest.raises(StorePathError, match="is not in the Nix store '/tmp/store'"):
        StorePath.parse(f"/nix/store/{HASH}-x", store_dir="/tmp/store")
    with pytest.raises(StorePathError, match="must be an absolute path"):
        StorePath.parse(f"/nix/store/{HASH}-x", store_dir="nix/store")


def test_name_of_211_characters_is_the_maximum() -> None:
    assert StorePath(HASH, "x" * 211)
    with pytest.raises(StorePathError, match="name of 212 characters, longer than 211"):
        StorePath(HASH, "x" * 212)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"/nix/store/{HASH}", "too short to be a valid store path"),
        ("/nix/store/abc-x", "too short"),
        (f"/nix/store/{HASH}-", "has an empty name"),
        (f"/nix/store/{HASH}_x", "has no '-' after the 32-character hash part"),
        (f"/nix/store/{HASH[:-1]}e-x", "illegal base-32 character 'e' at position 31"),
        (f"/nix/store/{HASH[:-1]}A-x", "illegal base-32 character 'A'"),
        (f"/nix/store/{HASH}-a b", "illegal character ' ' in its name"),
        (f"/nix/store/{HASH}-caf\u00e9", "illegal character '\u00e9' in its name"),
        (f"/nix/store/{HASH}-.hidden", "name starting with '.'"),
        (f"/nix/store/{HASH}-x/bin/sh", "has components after the store path basename"),
        (f"/nix/store//{HASH}-x", "has components after"),
        (f"/nix/stor/{HASH}-x", "is not in the Nix store '/nix/store'"),
        (f"{HASH}-x", "is not in the Nix store"),
    ],
)
def test_bad_paths(text: str, message: str) -> None:
    with pytest.raises(StorePathError, match=message.replace("?", r"\?")):
        StorePath.parse(text)


def test_bad_basename_with_slash() -> None:
    with pytest.raises(StorePathError, match="contains '/'"):
        parse_basename(f"{HASH}-x/y")


def test_constructor_validates() -> None:
    with pytest.raises(StorePathError, match="has 31 characters, expected 32"):
        StorePath(HASH[:-1], "x")
    with pytest.raises(StorePathError, match="has an empty name"):
        StorePath(HASH, "")


def test_validate_hash_part() -> None:
    assert validate_hash_part(HASH) == HASH
    with pytest.raises(StorePathError, match="has 33 characters, expected 32"):
        validate_hash_part(HASH + "0")
    with pytest.raises(StorePathError, match="has 0 characters"):
        validate_hash_part("")
    with pytest.raises(StorePathError, match="illegal base-32 character 'u' at position 0"):
        validate_hash_part("u" + HASH[1:])
    with pytest.raises(StorePathError, match=r"illegal base-32 character '\.'"):
        validate_hash_part("." * 32)
    with pytest.raises(StorePathError, match="illegal base-32 character '/' at position 2"):
        validate_hash_part("00/../../../etc/passwd" + "0" * 10)


def test_ordering_matches_path_order() -> None:
    paths = [StorePath(HASH, "b"), StorePath("0" * 32, "z"), StorePath(HASH, "a")]
    assert [p.path for p in sorted(paths)] == sorted(p.path for p in paths)

"""NAR listings (``<hash>.ls``): built by NarParser(listing=True), rendered as Nix 2.8 does.

The golden tests (marked ``nix``) compare with the ``.ls`` files Nix itself
writes with ``nix copy --to 'file://...?write-nar-listing=true'``.
"""

from __future__ import annotations

import json
import os
import stat
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nix_formats.errors import NarError, NarListingError, NixFormatError
from nix_formats.nar import dump_path
from nix_formats.nar import nar_string as _s  # the token Nix writes
from nix_formats.nar_listing import nar_listing, parse_listing, render_listing
from nix_formats.nar_parser import NarParser
from nix_formats.store_path import StorePath

Nix = Any
Closure = Any


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("entries", {}).items():
        yield from walk(child, f"{path}/{name}")


def fs_bytes(root: Path, rel: str) -> bytes:
    return os.fsencode(str(root) + rel)


# -- building listings -----------------------------------------------------------------


def test_listing_describes_every_node_of_the_tree(tree: Path) -> None:
    nar = b"".join(dump_path(tree))
    doc = nar_listing([nar])
    assert doc["version"] == 1
    root = doc["root"]
    assert root["type"] == "directory"
    seen = set()
    for rel, node in walk(root):
        full = fs_bytes(tree, rel)
        seen.add(full)
        if node["type"] == "regular":
            data = Path(os.fsdecode(full)).read_bytes()
            assert node["size"] == len(data)
            # narOffset: where the contents start in the NAR
            assert nar[node["narOffset"] : node["narOffset"] + node["size"]] == data
            assert node.get("executable", False) == bool(os.lstat(full).st_mode & stat.S_IXUSR)
            assert list(node) == ["type", "size", *(["executable"] if "executable" in node
                                                   else []), "narOffset"]
        elif node["type"] == "symlink":
            assert node["target"].encode("utf-8", "surrogateescape") == os.readlink(full)
            assert list(node) == ["type", "target"]
        else:
            assert node["type"] == "directory"
            names = [n.encode("utf-8", "surrogateescape") for n in node["entries"]]
            assert names == sorted(os.listdir(full))
    expected = {os.fsencode(dirpath + "/" + n) for dirpath, dirs, files in os.walk(tree)
                for n in dirs + files} | {os.fsencode(str(tree))}
    assert seen == expected


def test_executable_key_only_when_true(tree: Path) -> None:
    root = nar_listing(dump_path(tree))["root"]
    assert root["entries"]["exe"]["executable"] is True
    assert "executable" not in root["entries"]["groupx"]
    assert root["entries"]["emptyfile"]["size"] == 0
    assert root["entries"]["emptyfile"]["narOffset"] > 0


def test_non_utf8_names_round_trip(tree: Path) -> None:
    root = nar_listing(dump_path(tree))["root"]
    name = b"\xff".decode("utf-8", "surrogateescape")
    assert name in root["entries"]
    assert "é" in root["entries"]
    rendered = render_listing({"version": 1, "root": root})
    assert b'"\xff":' in rendered and '"é":'.encode() in rendered


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_listing_same_in_any_piece_size(tree: Path, piece: int) -> None:
    nar = b"".join(dump_path(tree))
    pieces = [nar[i : i + piece] for i in range(0, len(nar), piece)]
    assert nar_listing(pieces) == nar_listing([nar])


def test_root_regular_file_and_root_symlink(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"hello")
    f.chmod(0o755)
    assert nar_listing(dump_path(f)) == {
        "version": 1,
        # magic 24, "(" 16, "type" 16, "regular" 16, "executable" 24, "" 8, "contents" 16, size 8
        "root": {"type": "regular", "size": 5, "executable": True, "narOffset": 128},
    }
    link = tmp_path / "l"
    link.symlink_to("somewhere/else")
    assert nar_listing(dump_path(link))["root"] == {"type": "symlink", "target": "somewhere/else"}


def test_parser_gives_hash_and_listing_in_one_pass(tree: Path) -> None:
    parser = NarParser(listing=True)
    for piece in dump_path(tree):
        parser.feed(piece)
    stats = parser.finish()
    assert stats.sha256 is not None
    assert parser.listing == nar_listing(dump_path(tree))["root"]


def test_listing_property_errors(tree: Path) -> None:
    plain = NarParser()
    for piece in dump_path(tree):
        plain.feed(piece)
    plain.finish()
    with pytest.raises(NarError, match="listing=False"):
        _ = plain.listing
    early = NarParser(listing=True)
    early.feed(b"".join(dump_path(tree))[:100])
    with pytest.raises(NarError, match="before finish"):
        _ = early.listing
    broken = NarParser(listing=True)
    with pytest.raises(NarError):
        broken.feed(b"x" * 64)
    with pytest.raises(NarError, match="NAR magic"):
        _ = broken.listing


def test_malformed_or_truncated_nar_raises(tree: Path) -> None:
    nar = b"".join(dump_path(tree))
    with pytest.raises(NarError, match="truncated"):
        nar_listing([nar[:-8]])
    with pytest.raises(NarError, match="after the end"):
        nar_listing([nar + b"\0" * 8])


def test_deep_tree_without_recursion() -> None:
    depth = 3000
    nar = bytearray(_s(b"nix-archive-1"))
    for _ in range(depth):
        nar += _s(b"(") + _s(b"type") + _s(b"directory")
        nar += _s(b"entry") + _s(b"(") + _s(b"name") + _s(b"d") + _s(b"node")
    nar += _s(b"(") + _s(b"type") + _s(b"regular") + _s(b"contents") + _s(b"x") + _s(b")")
    nar += (_s(b")") + _s(b")")) * depth
    doc = nar_listing([bytes(nar)])
    rendered = render_listing(doc)
    assert rendered.count(b'"entries":{"d":') == depth
    with pytest.raises(NarListingError, match="nested too deeply"):
        parse_listing(rendered)


def test_memory_does_not_grow_with_file_contents() -> None:
    size = 64 << 20
    head = (_s(b"nix-archive-1") + _s(b"(") + _s(b"type") + _s(b"regular") + _s(b"contents")
            + size.to_bytes(8, "little"))
    zeros = bytes(1 << 20)

    def pieces() -> Iterator[bytes]:
        yield head
        for _ in range(size >> 20):
            yield zeros
        yield _s(b")")

    tracemalloc.start()
    try:
        doc = nar_listing(pieces())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert doc["root"] == {"type": "regular", "size": size, "narOffset": len(head)}
    assert peak < 1 << 20


# -- rendering ------------------------------------------------------------------------


def test_render_exact_bytes_and_escapes() -> None:
    weird = 'q"b\\n\nr\rt\tc\x01\x08\x0c\x1f\x7f' + b"\xfe".decode("utf-8", "surrogateescape")
    doc = {
        "root": {
            "entries": {
                "z": {"target": "é/" + weird, "type": "symlink"},
                weird: {"narOffset": 1, "type": "regular", "size": 2},
                "A": {"type": "directory", "entries": {}},
                "x": {"type": "regular", "size": 0, "executable": False, "narOffset": 9},
                "e": {"type": "regular", "size": 3, "executable": True, "narOffset": 0},
            },
            "type": "directory",
        },
        "version": 1,
    }
    lit = b'"q\\"b\\\\n\\nr\\rt\\tc\\u0001\\u0008\\u000c\\u001f\x7f\xfe"'
    assert render_listing(doc) == (
        b'{"version":1,"root":{"type":"directory","entries":{'
        b'"A":{"type":"directory","entries":{}},'
        b'"e":{"type":"regular","size":3,"executable":true},'
        + lit + b':{"type":"regular","size":2,"narOffset":1},'
        b'"x":{"type":"regular","size":0,"narOffset":9},'
        b'"z":{"type":"symlink","target":"\xc3\xa9/' + lit[1:] + b"}}}}"
    )


def test_entries_sorted_by_bytes_not_code_points() -> None:
    # U+FFFD (ef bf bd) sorts before an escaped byte 0xff, after 'z'.
    names = ["z", b"\xff".decode("utf-8", "surrogateescape"), "\ufffd", "B", "_"]
    entries = {n: {"type": "symlink", "target": "t"} for n in names}
    out = render_listing({"version": 1, "root": {"type": "directory", "entries": entries}})
    positions = [out.index(b'"' + n.encode("utf-8", "surrogateescape") + b'"') for n in names]
    order = [n for _, n in sorted(zip(positions, names, strict=True))]
    assert order == ["B", "_", "z", "\ufffd", b"\xff".decode("utf-8", "surrogateescape")]


def test_parse_render_round_trip(tree: Path) -> None:
    doc = nar_listing(dump_path(tree))
    data = render_listing(doc)
    assert parse_listing(data) == doc
    assert render_listing(parse_listing(data)) == data


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"version": 2, "root": {"type": "symlink", "target": "x"}}, "version"),
        ({"version": True, "root": {"type": "symlink", "target": "x"}}, "version"),
        ({"version": 1}, "no root"),
        ({"version": 1, "root": {"type": "symlink", "target": "x"}, "x": 1}, "unexpected keys"),
        ({"version": 1, "root": {"type": "fifo"}}, "type must be"),
        ({"version": 1, "root": []}, "expected an object"),
        ({"version": 1, "root": {"type": "regular", "size": -1}}, "size"),
        ({"version": 1, "root": {"type": "regular"}}, "size"),
        ({"version": 1, "root": {"type": "regular", "size": 1.5}}, "size"),
        ({"version": 1, "root": {"type": "regular", "size": 1, "narOffset": "8"}}, "narOffset"),
        ({"version": 1, "root": {"type": "regular", "size": 1, "executable": 1}}, "executable"),
        ({"version": 1, "root": {"type": "regular", "size": 1, "target": "x"}}, "unexpected"),
        ({"version": 1, "root": {"type": "symlink", "target": ""}}, "target"),
        ({"version": 1, "root": {"type": "directory"}}, "entries"),
        ({"version": 1, "root": {"type": "directory", "entries": {"a/b": {}}}}, "entry name"),
        ({"version": 1, "root": {"type": "directory", "entries": {"": {}}}}, "entry name"),
        ({"version": 1, "root": {"type": "directory", "entries": {"a": {
            "type": "directory", "entries": {"b": {"type": "regular", "size": -2}}}}}},
         "'/a/b'"),
        ({"version": 1, "root": {"type": "symlink", "target": "\ud800"}}, "surrogate"),
    ],
)
def test_render_rejects_malformed_listings(doc: Any, message: str) -> None:
    with pytest.raises(NarListingError, match=message):
        render_listing(doc)


def test_parse_rejects_non_json_and_bad_shapes() -> None:
    with pytest.raises(NarListingError, match="not valid JSON"):
        parse_listing(b'{"version":1,')
    with pytest.raises(NarListingError, match="must be an object"):
        parse_listing(b"[1]")
    with pytest.raises(NarListingError, match="version"):
        parse_listing(b'{"version":3,"root":{"type":"symlink","target":"x"}}')
    assert issubclass(NarListingError, NixFormatError)


# -- golden: what Nix 2.8 writes ----------------------------------------------------------


def weird_tree(root: Path) -> Path:
    """Names and targets that exercise every escaping rule of Nix's JSON writer."""
    root.mkdir()
    for raw in [b'q"uo\\te', b"tab\there", b"nl\nx", b"cr\rx", b"ctl\x01x\x08\x0c\x1fy\x7f",
                "café".encode(), b"bad\xff", b"a", b"B"]:
        (root / os.fsdecode(raw)).write_bytes(raw)
    (root / "emptyfile").write_bytes(b"")
    exe = root / "run"
    exe.write_bytes(b"#!/bin/sh\n")
    exe.chmod(0o755)
    (root / "weird-link").symlink_to(os.fsdecode(b'tgt"\\\x01\xc3\xa9\xfe'))
    (root / "empty").mkdir()
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "deeper" / "f").write_bytes(b"deep")
    return root


def nix_listing(nix: Nix, store_path: str, cache: Path) -> tuple[bytes, bytes]:
    """(the .ls bytes Nix wrote, the uncompressed NAR Nix wrote) for ``store_path``."""
    nix.run("nix", "copy", "--to",
            f"file://{cache}?write-nar-listing=true&compression=none", store_path)
    hash_part = StorePath.parse(store_path).hash_part
    ls = (cache / f"{hash_part}.ls").read_bytes()
    narinfo = (cache / f"{hash_part}.narinfo").read_text()
    url = next(line[5:] for line in narinfo.splitlines() if line.startswith("URL: "))
    return ls, (cache / url).read_bytes()


@pytest.mark.nix
def test_golden_listing_of_built_closure(nix: Nix, closure: Closure, tmp_path: Path) -> None:
    for path in (closure.a, closure.b):
        theirs, nar = nix_listing(nix, path, tmp_path / "cache")
        ours = render_listing(nar_listing(dump_path(path)))
        assert ours == theirs
        assert nar_listing([nar]) == json.loads(theirs)


@pytest.mark.nix
@pytest.mark.parametrize("which", ["tree", "weird"])
def test_golden_listing_matches_nix_byte_for_byte(
    nix: Nix, tree: Path, tmp_path: Path, which: str
) -> None:
    source = tree if which == "tree" else weird_tree(tmp_path / "weird")
    store_path = nix.text("nix-store", "--add", source)
    theirs, nar = nix_listing(nix, store_path, tmp_path / "cache")
    assert nar == b"".join(dump_path(source))
    ours = render_listing(nar_listing([nar]))
    assert ours == theirs
    assert parse_listing(theirs) == nar_listing(dump_path(store_path))

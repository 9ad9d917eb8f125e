"""Random and mutated inputs to the parsers of hostile bytes: only the package's errors escape.

Each parser reads bytes a node, an upstream or an uploader controls
(``.ls`` listings, narinfos, NARs, compressed files).  Whatever it is given,
it either returns or raises its own :class:`~nix_formats.errors.NixFormatError`
subclass: never ``TypeError``, ``ValueError``, ``RecursionError``,
``KeyError`` ... (which a server would turn into a 500).
"""

from __future__ import annotations

import bz2
import json
import lzma

import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nix_formats.compression import SUPPORTED_METHODS, decompress
from nix_formats.errors import CompressionError, NarError, NarInfoError, NarListingError
from nix_formats.nar import nar_string as _s  # the token Nix writes
from nix_formats.nar_listing import parse_listing
from nix_formats.nar_parser import NarParser
from nix_formats.narinfo import NarInfo

from .samples import NIX_WRITTEN_NARINFO

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _entry(name: bytes, node: bytes) -> bytes:
    return b"".join([_s(b"entry"), _s(b"("), _s(b"name"), _s(name), _s(b"node"), node, _s(b")")])


def _regular(contents: bytes, executable: bool = False) -> bytes:
    mark = _s(b"executable") + _s(b"") if executable else b""
    return b"".join([_s(b"("), _s(b"type"), _s(b"regular"), mark, _s(b"contents"),
                     _s(contents), _s(b")")])


SYMLINK = b"".join([_s(b"("), _s(b"type"), _s(b"symlink"), _s(b"target"), _s(b"a/b"), _s(b")")])
VALID_NAR = _s(b"nix-archive-1") + b"".join([
    _s(b"("), _s(b"type"), _s(b"directory"),
    _entry(b"bin", _regular(b"#!/bin/sh\n", executable=True)),
    _entry(b"link", SYMLINK),
    _entry(b"z", b"".join([_s(b"("), _s(b"type"), _s(b"directory"),
                           _entry(b"f", _regular(b"x" * 100)), _s(b")")])),
    _s(b")"),
])
VALID_LISTING = json.dumps({"version": 1, "root": {"type": "directory", "entries": {
    "bin": {"type": "regular", "size": 10, "executable": True, "narOffset": 200},
    "link": {"type": "symlink", "target": "a/b"},
    "z": {"type": "directory", "entries": {"f": {"type": "regular", "size": 100}}}}}}).encode()


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with a few bytes flipped, cut, inserted or a slice repeated."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 64))] * draw(st.integers(1, 4))
        else:
            del data[at:]
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "size", "entries", "target", "executable", "narOffset",
                         "version", "root", "x"]) | st.text(max_size=4), inner, max_size=5),
    max_leaves=20)


def _parses_or_refuses_listing(data: bytes) -> None:
    try:
        parse_listing(data)
    except NarListingError:
        pass


@FUZZ
@given(st.binary(max_size=200))
def test_parse_listing_random_bytes(data: bytes) -> None:
    _parses_or_refuses_listing(data)


@FUZZ
@given(JSON_VALUES)
def test_parse_listing_random_json(root: object) -> None:
    _parses_or_refuses_listing(json.dumps({"version": 1, "root": root}).encode())
    _parses_or_refuses_listing(json.dumps(root).encode())


@FUZZ
@given(mutated(VALID_LISTING))
def test_parse_listing_mutated(data: bytes) -> None:
    _parses_or_refuses_listing(data)


def test_parse_listing_known_crashers() -> None:
    """Found by hand or by the fuzzers above: each once raised something else."""
    for data in (b'{"version":1,"root":{"type":{}}}', b'{"version":1,"root":{"type":[1]}}',
                 b'{"version":1,"root":{"type":"regular","size":' + b"9" * 5000 + b"}}",
                 b"[" * 100_000):
        try:
            parse_listing(data)
        except NarListingError:
            continue
        raise AssertionError(f"{data[:40]!r} was accepted")


def _parses_or_refuses_narinfo(text: str) -> None:
    try:
        NarInfo.parse(text)
    except NarInfoError:
        pass


@FUZZ
@given(st.text(max_size=300))
def test_narinfo_random_text(text: str) -> None:
    _parses_or_refuses_narinfo(text)


@FUZZ
@given(mutated(NIX_WRITTEN_NARINFO.encode()))
def test_narinfo_mutated(data: bytes) -> None:
    _parses_or_refuses_narinfo(data.decode("utf-8", "replace"))


@FUZZ
@given(st.sampled_from(["NarSize", "FileSize", "NarHash", "FileHash", "StorePath", "URL",
                        "References", "Deriver", "CA", "Sig", "Compression"]),
       st.text(max_size=60) | st.from_regex(r"\A[0-9]{15,5000}\Z"))
def test_narinfo_field_values(key: str, value: str) -> None:
    lines = [line for line in NIX_WRITTEN_NARINFO.splitlines() if not line.startswith(key + ":")]
    _parses_or_refuses_narinfo("\n".join([*lines, f"{key}: {value}"]) + "\n")


def test_narinfo_huge_number_is_refused() -> None:
    """int() of more than 4300 digits raises ValueError: NarInfo.parse must not let it out."""
    text = NIX_WRITTEN_NARINFO.replace("NarSize: 160", "NarSize: " + "1" * 4301)
    try:
        NarInfo.parse(text)
    except NarInfoError as exc:
        assert "does not fit in 64 bits" in str(exc)
    else:
        raise AssertionError("accepted")


def _parses_or_refuses_nar(data: bytes, cuts: list[int]) -> None:
    parser = NarParser(listing=True, max_listing_nodes=50)
    try:
        start = 0
        for cut in sorted(cuts):
            parser.feed(data[start:cut])
            start = max(start, cut)
        parser.feed(data[start:])
        parser.finish()
    except NarError:
        pass


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_nar_parser_random_bytes(data: bytes, cuts: list[int]) -> None:
    _parses_or_refuses_nar(_s(b"nix-archive-1") + data, cuts)
    _parses_or_refuses_nar(data, cuts)


@FUZZ
@given(mutated(VALID_NAR), st.lists(st.integers(0, len(VALID_NAR)), max_size=5))
def test_nar_parser_mutated(data: bytes, cuts: list[int]) -> None:
    _parses_or_refuses_nar(data, cuts)


def test_valid_samples_are_valid() -> None:
    """The seeds of the mutations parse (else the mutation tests prove little)."""
    parser = NarParser(listing=True)
    parser.feed(VALID_NAR)
    parser.finish()
    assert parse_listing(VALID_LISTING)["root"]["type"] == "directory"
    assert NarInfo.parse(NIX_WRITTEN_NARINFO).nar_size == 160


COMPRESSED = {
    "xz": lzma.compress(VALID_NAR),
    "bzip2": bz2.compress(VALID_NAR),
    "zstd": zstandard.ZstdCompressor().compress(VALID_NAR),
    "none": VALID_NAR,
}


@FUZZ
@given(st.sampled_from(sorted(SUPPORTED_METHODS)), st.data())
def test_decompress_mutated_and_random(method: str, data: st.DataObject) -> None:
    seed = COMPRESSED.get(method, VALID_NAR)
    blob = data.draw(mutated(seed) | st.binary(max_size=200))
    try:
        for _ in decompress(method, [blob], max_output=4 * len(VALID_NAR)):
            pass
    except CompressionError:
        pass

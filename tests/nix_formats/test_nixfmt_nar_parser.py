"""Streaming NAR validation: NarParser on valid input and on every kind of bad input."""

from __future__ import annotations

import hashlib
import random
import tracemalloc
from collections.abc import Iterator

import pytest

from nix_formats.errors import NarError, NixFormatError
from nix_formats.nar import MAX_NAME_BYTES, MAX_TARGET_BYTES
from nix_formats.nar import nar_string as s  # the token Nix writes
from nix_formats.nar_parser import NarParser, NarStats, validate_nar

from .handmade_nar import SAMPLE, directory, nar, reg, sym


def parse(data: bytes) -> NarStats:
    return validate_nar([data])


def offset_of(needle: bytes, data: bytes = SAMPLE) -> int:
    return data.index(needle)


# -- NarParser: valid input -------------------------------------------------------


def test_parse_sample_stats() -> None:
    stats = parse(SAMPLE)
    assert stats == NarStats(
        nar_size=len(SAMPLE),
        sha256=hashlib.sha256(SAMPLE).digest(),
        regular_files=3,
        executables=1,
        symlinks=1,
        directories=3,
        contents_size=len(b"hello\n#!/bin/sh\n"),
    )
    assert stats.nar_hash.startswith("sha256:") and len(stats.nar_hash) == 59


def test_parse_without_hash() -> None:
    stats = validate_nar([SAMPLE], compute_sha256=False)
    assert stats.sha256 is None
    with pytest.raises(NarError, match="compute_sha256=False"):
        _ = stats.nar_hash


def test_parse_single_nodes() -> None:
    assert parse(nar(reg(b""))).regular_files == 1
    assert parse(nar(sym(b"/x"))).symlinks == 1
    assert parse(nar(directory())).directories == 1


def test_parse_byte_by_byte() -> None:
    parser = NarParser()
    for i in range(len(SAMPLE)):
        parser.feed(SAMPLE[i : i + 1])
    assert parser.finish() == parse(SAMPLE)


@pytest.mark.parametrize("seed", range(20))
def test_parse_random_pieces(seed: int) -> None:
    rng = random.Random(seed)
    parser = NarParser()
    pos = 0
    while pos < len(SAMPLE):
        n = rng.choice([0, 1, 3, 7, 8, 9, 17, 64, 200])
        parser.feed(memoryview(SAMPLE)[pos : pos + n])
        pos += n
    assert parser.done
    assert parser.finish() == parse(SAMPLE)


def test_parse_bytearray_and_memoryview() -> None:
    assert validate_nar([bytearray(SAMPLE)]) == validate_nar([memoryview(SAMPLE)])


def test_contents_are_skipped_not_buffered() -> None:
    size = 48 * 1024 * 1024
    block = bytes(1024 * 1024)

    def chunks() -> Iterator[bytes]:
        yield s(b"nix-archive-1") + s(b"(") + s(b"type") + s(b"regular") + s(b"contents")
        yield size.to_bytes(8, "little")
        for _ in range(size // len(block)):
            yield block
        yield s(b")")

    tracemalloc.start()
    try:
        stats = validate_nar(chunks(), compute_sha256=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.contents_size == size
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes: contents were buffered"


# -- NarParser: errors --------------------------------------------------------------


def expect_error(data: bytes, message: str, offset: int | None) -> NarError:
    with pytest.raises(NarError, match=message) as info:
        parse(data)
    assert info.value.offset == offset
    assert isinstance(info.value, NixFormatError)
    if offset is not None:
        assert f"invalid NAR at byte offset {offset}: " in str(info.value)
    return info.value


def test_bad_magic() -> None:
    expect_error(
        s(b"nix-archive-2") + reg(b""), "expected 'nix-archive-1' \\(NAR magic\\), found", 0
    )


def test_huge_keyword_length_is_not_read() -> None:
    data = (1 << 62).to_bytes(8, "little") + b"x" * 16
    expect_error(data, "found a string of 4611686018427387904 bytes", 0)


def test_every_truncation_is_rejected() -> None:
    for end in range(len(SAMPLE)):
        parser = NarParser()
        parser.feed(SAMPLE[:end])
        with pytest.raises(NarError, match=f"byte offset {end}: truncated NAR: input ended"):
            parser.finish()


def test_truncation_message_says_what_was_expected() -> None:
    data = nar(reg(b"hello"))
    cut = data.index(b"hello") + 2
    parser = NarParser()
    parser.feed(data[:cut])
    with pytest.raises(NarError, match="expecting 5 bytes of file contents"):
        parser.finish()
    parser = NarParser()
    parser.feed(b"")
    with pytest.raises(NarError, match="byte offset 0: .*expecting 'nix-archive-1'"):
        parser.finish()


def test_trailing_data() -> None:
    expect_error(SAMPLE + b"\0", "unexpected data after the end of the NAR", len(SAMPLE))
    parser = NarParser()
    parser.feed(SAMPLE)
    with pytest.raises(NarError, match="unexpected data after the end"):
        parser.feed(b"x")


def test_parser_stays_failed() -> None:
    parser = NarParser()
    with pytest.raises(NarError) as first:
        parser.feed(s(b"bogus"))
    with pytest.raises(NarError) as again:
        parser.feed(SAMPLE)
    assert again.value is first.value
    with pytest.raises(NarError):
        parser.finish()


def test_nonzero_padding_in_token() -> None:
    data = bytearray(SAMPLE)
    pos = 8 + len(b"nix-archive-1")  # first padding byte of the magic
    data[pos] = 1
    expect_error(bytes(data), "non-zero padding after 'nix-archive-1'", pos)


def test_nonzero_padding_after_contents() -> None:
    data = bytearray(nar(reg(b"hello")))
    pos = data.index(b"hello") + 5
    data[pos + 1] = 0xFF
    expect_error(bytes(data), "non-zero padding after file contents", pos)


def test_nonzero_padding_after_name() -> None:
    data = bytearray(nar(directory((b"abc", reg(b"")))))
    pos = data.index(b"abc") + 3
    data[pos + 4] = 7
    expect_error(bytes(data), "non-zero padding after an entry name", pos)


def test_unknown_node_type() -> None:
    data = nar(s(b"(") + s(b"type") + s(b"fifo") + s(b")"))
    expect_error(
        data,
        "expected 'regular' or 'symlink' or 'directory' \\(node type\\), found 'fifo'",
        offset_of(s(b"fifo"), data),
    )


def test_missing_type_field() -> None:
    data = nar(s(b"(") + s(b"kind"))
    expect_error(data, "expected 'type' \\(node type field\\), found 'kind'", 40)


def test_regular_field_order() -> None:
    data = nar(s(b"(") + s(b"type") + s(b"regular") + s(b"target") + s(b"x") + s(b")"))
    expect_error(
        data, "expected 'executable' or 'contents'.*found 'target'", offset_of(s(b"target"), data)
    )
    bad_exec = nar(
        s(b"(")
        + s(b"type")
        + s(b"regular")
        + s(b"executable")
        + s(b"yes")
        + s(b"contents")
        + s(b"")
        + s(b")")
    )
    expect_error(
        bad_exec,
        "executable marker has non-empty value 'yes'",
        offset_of(s(b"yes"), bad_exec),
    )
    twice = nar(
        s(b"(")
        + s(b"type")
        + s(b"regular")
        + s(b"contents")
        + s(b"")
        + s(b"contents")
        + s(b"")
        + s(b")")
    )
    expect_error(
        twice,
        "expected '\\)' \\(end of a regular node\\), found 'contents'",
        twice.rindex(s(b"contents")),
    )


def test_directory_content_tokens() -> None:
    data = nar(s(b"(") + s(b"type") + s(b"directory") + s(b"file") + s(b")"))
    expect_error(
        data,
        "expected 'entry' or '\\)' \\(directory contents\\), found 'file'",
        data.index(s(b"file")),
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (b"", "empty entry name"),
        (b".", "invalid entry name '.'"),
        (b"..", "invalid entry name '..'"),
        (b"a/b", "entry name 'a/b' contains '/'"),
        (b"a\0b", "entry name 'a\\\\x00b' contains a NUL byte|entry name 'a\\x00b' contains a NUL"),
    ],
)
def test_bad_entry_names(name: bytes, message: str) -> None:
    data = nar(directory((name, reg(b""))))
    pos = data.index(s(b"name")) + 16
    expect_error(data, message, pos)


def test_name_too_long() -> None:
    data = nar(directory((b"n" * (MAX_NAME_BYTES + 1), reg(b""))))
    pos = data.index(s(b"name")) + 16
    expect_error(data, "an entry name is 256 bytes long, more than the limit of 255", pos)
    assert parse(nar(directory((b"n" * MAX_NAME_BYTES, reg(b""))))).regular_files == 1


def test_unsorted_entries() -> None:
    data = nar(directory((b"b", reg(b"")), (b"a", reg(b""))))
    pos = data.rindex(s(b"a"))
    expect_error(data, "entry 'a' comes after 'b': directory entries must be sorted", pos)


def test_locale_order_is_wrong_order() -> None:
    data = nar(directory((b"a", reg(b"")), (b"B", reg(b""))))
    expect_error(data, "entry 'B' comes after 'a'", data.index(s(b"B")))


def test_duplicate_entries() -> None:
    data = nar(directory((b"a", reg(b"")), (b"a", reg(b"x"))))
    expect_error(data, "duplicate entry name 'a'", data.rindex(s(b"a")))


def test_sort_order_is_per_directory() -> None:
    data = nar(directory((b"m", directory((b"z", reg(b"")))), (b"n", directory((b"a", reg(b""))))))
    assert parse(data).directories == 3


def test_symlink_targets() -> None:
    data = nar(sym(b""))
    expect_error(data, "empty symlink target", data.index(s(b"target")) + 16)
    data = nar(sym(b"a\0b"))
    expect_error(data, "symlink target .* contains a NUL byte", data.index(s(b"target")) + 16)
    data = nar(sym(b"x" * (MAX_TARGET_BYTES + 1)))
    expect_error(
        data,
        "a symlink target is 4096 bytes long, more than the limit of 4095",
        data.index(s(b"target")) + 16,
    )


def test_missing_entry_close() -> None:
    entry = s(b"entry") + s(b"(") + s(b"name") + s(b"a") + s(b"node") + reg(b"")
    data = nar(s(b"(") + s(b"type") + s(b"directory") + entry + s(b"x"))
    expect_error(data, "expected '\\)' \\(end of a directory entry\\), found 'x'", len(data) - 16)


def test_single_byte_corruptions_raise_only_nar_error() -> None:
    for pos in range(len(SAMPLE)):
        for flip in (0x01, 0x80):
            data = bytearray(SAMPLE)
            data[pos] ^= flip
            try:
                stats = parse(bytes(data))
            except NarError:
                continue
            # Only file contents (and the bytes of a symlink target) may change undetected.
            assert stats.sha256 != hashlib.sha256(SAMPLE).digest()


def test_random_garbage_raises_nar_error() -> None:
    rng = random.Random(7)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        with pytest.raises(NarError):
            parse(s(b"nix-archive-1") + data)

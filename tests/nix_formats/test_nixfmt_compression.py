"""Streaming decompression of narinfo ``Compression:`` methods (nix_formats.compression)."""

from __future__ import annotations

import bz2
import lzma
import os
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from nix_formats import compression
from nix_formats.compression import (
    MAX_PIECE,
    SUPPORTED_METHODS,
    decompress,
    file_extension,
    max_compressed_size,
)
from nix_formats.errors import (
    CompressedDataError,
    CompressionError,
    DecompressedTooLargeError,
    NixFormatError,
    UnsupportedCompressionError,
)
from nix_formats.nar import dump_path
from nix_formats.narinfo import NarInfo

Nix = Any
Closure = Any

DATA = random.Random(1).randbytes(300_000) + bytes(3_000_000) + b"the end"
CAP = len(DATA)  # the max_output of the tests that are not about it
BROTLI_BOMB = (Path(__file__).parent / "data" / "zeros-1gib.br").read_bytes()  # 1 GiB of zeros


def pieces_of(blob: bytes, size: int) -> list[bytes]:
    return [blob[i : i + size] for i in range(0, len(blob), size)]


def compressors() -> dict[str, bytes]:
    """One blob per method, most of them multi-stream / multi-frame."""
    half = len(DATA) // 2
    cctx = zstandard.ZstdCompressor(write_checksum=True)
    streaming = zstandard.ZstdCompressor().compressobj()  # frame without content size
    return {
        "none": DATA,
        "xz": lzma.compress(DATA[:half]) + b"\0" * 8 + lzma.compress(DATA[half:]),
        "bzip2": bz2.compress(DATA[:1000]) + bz2.compress(DATA[1000:]),
        "zstd": (cctx.compress(DATA[:777])
                 + b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"skip!"  # skippable
                 + zstandard.ZstdCompressor(level=1).compress(DATA[777:half])
                 + streaming.compress(DATA[half:]) + streaming.flush()),
    }


BLOBS = compressors()
COMPRESSED = [m for m in BLOBS if m != "none"]


@pytest.mark.parametrize("method", sorted(BLOBS))
@pytest.mark.parametrize("piece", [1, 1000, 65536, None])
def test_round_trip_in_any_piece_size(method: str, piece: int | None) -> None:
    blob = BLOBS[method]
    if piece == 1 and len(blob) > 100_000:
        blob_pieces = pieces_of(blob, 997)  # keep the test fast; odd size
    else:
        blob_pieces = pieces_of(blob, piece or len(blob))
    out = list(decompress(method, blob_pieces, max_output=CAP))
    assert b"".join(out) == DATA
    assert all(0 < len(p) <= MAX_PIECE for p in out)


@pytest.mark.parametrize("method", sorted(BLOBS))
def test_output_pieces_bounded_by_max_piece(method: str) -> None:
    out = list(decompress(method, [BLOBS[method]], max_piece=4096, max_output=CAP))
    assert b"".join(out) == DATA
    assert max(map(len, out)) == 4096


def test_none_accepts_memoryview_and_empty_string_method() -> None:
    pieces = [memoryview(b"ab"), b"", bytearray(b"c")]
    assert b"".join(decompress("", pieces, max_output=3)) == b"abc"
    assert list(decompress("none", [], max_output=0)) == []


def test_zstd_bomb_costs_no_memory() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 << 20))
    assert len(bomb) < 64 << 10
    tracemalloc.start()
    try:
        total = 0
        for piece in decompress("zstd", [bomb], max_output=256 << 20):
            total += len(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 256 << 20
    assert peak < 3 * MAX_PIECE


@pytest.mark.parametrize(
    ("method", "decoder_bytes"),
    [("xz", 9 << 20), ("bzip2", 1 << 20)],  # xz -6 has an 8 MiB window; bzip2 900 kB blocks
)
def test_stdlib_bomb_costs_no_memory(method: str, decoder_bytes: int) -> None:
    module: Any = lzma if method == "xz" else bz2
    bomb = module.compress(bytes(64 << 20))
    tracemalloc.start()
    try:
        pieces = decompress(method, pieces_of(bomb, 1 << 16), max_output=64 << 20)
        total = sum(len(p) for p in pieces)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 64 << 20
    assert peak < decoder_bytes + 3 * MAX_PIECE


def test_decompression_is_lazy() -> None:
    consumed = []

    blob = zstandard.ZstdCompressor().compress(random.Random(2).randbytes(4 << 20))
    blob_pieces = pieces_of(blob, 4096)

    def source() -> Iterator[bytes]:
        for i, piece in enumerate(blob_pieces):
            consumed.append(i)
            yield piece

    it = decompress("zstd", source(), max_output=CAP)
    assert consumed == []
    assert len(next(it)) == MAX_PIECE
    assert 0 < len(consumed) < len(blob_pieces) / 2


@pytest.mark.parametrize("method", COMPRESSED)
@pytest.mark.parametrize("keep", [1, 5, 0.5, -1])
def test_truncated_input_raises(method: str, keep: float) -> None:
    blob = BLOBS[method]
    cut = int(len(blob) * keep) if isinstance(keep, float) else keep % len(blob)
    with pytest.raises(CompressedDataError, match=f"truncated {method}|corrupt {method}") as info:
        b"".join(decompress(method, pieces_of(blob[:cut], 1000), max_output=CAP))
    assert info.value.method == method
    assert 0 < info.value.offset <= cut


@pytest.mark.parametrize("method", COMPRESSED)
def test_empty_input_raises(method: str) -> None:
    with pytest.raises(CompressedDataError, match=f"empty {method} data"):
        list(decompress(method, [b""], max_output=CAP))


@pytest.mark.parametrize("method", COMPRESSED)
def test_trailing_garbage_raises(method: str) -> None:
    with pytest.raises(CompressedDataError, match=method):
        b"".join(decompress(method, [BLOBS[method], b"this is not compressed data"],
                            max_output=CAP))


@pytest.mark.parametrize(
    ("method", "blob"),
    [
        ("xz", lzma.compress(DATA)),
        ("bzip2", bz2.compress(DATA)),
        ("zstd", zstandard.ZstdCompressor(write_checksum=True).compress(DATA)),
    ],
)
@pytest.mark.parametrize("where", [0.5, 0.99])
def test_corrupt_input_raises(method: str, blob: bytes, where: float) -> None:
    bad = bytearray(blob)
    bad[int(len(bad) * where)] ^= 0x55
    with pytest.raises(CompressedDataError, match=f"corrupt {method} data") as info:
        b"".join(decompress(method, [bytes(bad)], max_output=CAP))
    assert info.value.offset > 0


def test_bad_zstd_headers_raise() -> None:
    with pytest.raises(CompressedDataError, match="not the zstd magic"):
        list(decompress("zstd", [b"\x00" * 16], max_output=CAP))
    with pytest.raises(CompressedDataError, match="reserved header bit"):
        list(decompress("zstd", [b"\x28\xb5\x2f\xfd\x08" + b"\x00" * 16], max_output=CAP))
    with pytest.raises(CompressedDataError, match="reserved type"):
        list(decompress("zstd", [b"\x28\xb5\x2f\xfd\x20\x05" + b"\x07\x00\x00" + b"\x00" * 8],
                        max_output=CAP))


@pytest.mark.parametrize("method", ["gzip", "lz4", "lzip", "XZ", "zst", "rar"])
def test_unknown_method_raises_at_once(method: str) -> None:
    def never() -> Iterator[bytes]:
        raise AssertionError("input must not be read")
        yield b""

    with pytest.raises(UnsupportedCompressionError, match=repr(method)) as info:
        decompress(method, never(), max_output=CAP)
    assert info.value.method == method
    assert "xz" in str(info.value)


def test_brotli_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "brotli", None)
    with pytest.raises(UnsupportedCompressionError, match="'br'.*brotli.*not installed"):
        decompress("br", [b""], max_output=0)


def test_brotli_round_trip_and_truncation() -> None:
    assert compression.brotli is not None, "brotli is a dependency (pyproject.toml)"
    blob = compression.brotli.compress(DATA)
    assert b"".join(decompress("br", pieces_of(blob, 1000), max_output=CAP)) == DATA
    with pytest.raises(CompressedDataError, match="truncated br"):
        list(decompress("br", [blob[:-3]], max_output=CAP))


# -- the output cap (max_output) -------------------------------------------------------


@pytest.mark.parametrize("method", sorted(BLOBS))
def test_output_past_max_output_raises(method: str) -> None:
    """Exactly the cap is fine; one byte less and the error comes before more is decoded."""
    assert b"".join(decompress(method, [BLOBS[method]], max_output=len(DATA))) == DATA
    got = 0
    with pytest.raises(DecompressedTooLargeError, match=f"more than {len(DATA) - 1} bytes") as info:
        for piece in decompress(method, pieces_of(BLOBS[method], 5000), max_output=len(DATA) - 1):
            got += len(piece)
    assert got <= len(DATA) - 1
    assert info.value.limit == len(DATA) - 1
    assert isinstance(info.value, CompressedDataError)


def _bombs() -> dict[str, bytes]:
    zeros = bytes(64 << 20)
    return {"zstd": zstandard.ZstdCompressor(level=19).compress(bytes(256 << 20)),
            "xz": lzma.compress(zeros), "bzip2": bz2.compress(zeros), "br": BROTLI_BOMB}


BOMBS = _bombs()


@pytest.mark.parametrize("method", sorted(BOMBS))
def test_bomb_fails_right_after_the_cap(method: str) -> None:
    """A narinfo saying NarSize 120 on a bomb: the error comes after ~120 bytes of output,
    not after the bomb went off (the xz decoder's 8 MiB window is its only memory)."""
    decoded = 0
    tracemalloc.start()
    try:
        with pytest.raises(DecompressedTooLargeError):
            for piece in decompress(method, pieces_of(BOMBS[method], 1 << 16), max_output=120):
                decoded += len(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoded <= 120
    assert peak < (9 << 20 if method == "xz" else 1 << 20)


def test_brotli_bomb_is_decoded_in_bounded_pieces() -> None:
    """output_buffer_limit: one process() call of the 1.6 kB bomb never returns its 1 GiB."""
    tracemalloc.start()
    try:
        decoded = 0
        for piece in decompress("br", [BROTLI_BOMB], max_output=1 << 30):
            decoded += len(piece)
            if decoded >= 64 << 20:
                break
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoded >= 64 << 20
    # brotli overshoots its limit up to 2x; with the split copies a few MiB, never the GiB
    assert peak < 8 * MAX_PIECE


def test_brotli_older_than_1_2_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without output_buffer_limit a br file cannot be decoded in bounded memory."""

    class OldBrotli:
        Decompressor = object
        error = Exception

    monkeypatch.setattr(compression, "brotli", OldBrotli)
    with pytest.raises(UnsupportedCompressionError, match="older than 1.2"):
        decompress("br", [b""], max_output=0)


def test_max_compressed_size() -> None:
    assert max_compressed_size("none", 1000) == 1000
    for method in COMPRESSED:
        blob = {"xz": lzma.compress, "bzip2": bz2.compress,
                "zstd": zstandard.ZstdCompressor().compress}[method](DATA)
        assert len(blob) <= max_compressed_size(method, len(DATA))
        incompressible = random.Random(3).randbytes(1 << 20)
        again = {"xz": lzma.compress, "bzip2": bz2.compress,
                 "zstd": zstandard.ZstdCompressor().compress}[method](incompressible)
        assert len(incompressible) < len(again) <= max_compressed_size(method, 1 << 20)
    assert max_compressed_size("zstd", 1 << 30) < (1 << 30) * 1.02
    with pytest.raises(UnsupportedCompressionError):
        max_compressed_size("gzip", 100)


def test_max_output_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="max_output"):
        decompress("none", [], max_output=-1)


def test_max_piece_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_piece"):
        decompress("none", [], max_piece=0, max_output=0)


def test_file_extensions_as_nix_names_them() -> None:
    assert [file_extension(m) for m in ("xz", "bzip2", "zstd", "br", "lz4", "lzip")] == [
        ".xz", ".bz2", ".zst", ".br", ".lz4", ".lzip"]
    assert file_extension("none") == "" and file_extension("gzip") == ""


def test_error_tree_and_supported_set() -> None:
    for cls in (UnsupportedCompressionError, CompressedDataError):
        assert issubclass(cls, CompressionError) and issubclass(cls, NixFormatError)
    assert {"none", "xz", "bzip2", "zstd"} <= SUPPORTED_METHODS
    assert ("br" in SUPPORTED_METHODS) == (compression.brotli is not None)


# -- golden: NAR files Nix 2.8 compressed ------------------------------------------------


@pytest.mark.nix
@pytest.mark.parametrize(
    ("method", "parallel"),  # Nix compresses in parallel only for xz and zstd
    [("xz", False), ("xz", True), ("zstd", False), ("zstd", True), ("bzip2", False),
     ("none", False)],
)
def test_golden_decompress_nix_written_nars(
    nix: Nix, closure: Closure, tree: Path, tmp_path: Path, method: str, parallel: bool
) -> None:
    tree_path = nix.text("nix-store", "--add", tree)
    cache = tmp_path / "cache"
    params = f"compression={method}&parallel-compression={str(parallel).lower()}"
    nix.run("nix", "copy", "--to", f"file://{cache}?{params}", closure.b, tree_path)
    for store_path in (closure.a, closure.b, tree_path):
        hash_part = os.path.basename(store_path)[:32]
        info = NarInfo.parse((cache / f"{hash_part}.narinfo").read_text())
        assert info.compression == method
        assert info.url.endswith(".nar" + file_extension(method))
        blob = (cache / info.url).read_bytes()
        nar = b"".join(decompress(method, pieces_of(blob, 10_000), max_output=1 << 30))
        assert nar == b"".join(dump_path(store_path))

"""Golden tests: our formats against the real `nix` (2.8) byte for byte.

Skipped when nix is not installed, failed instead when $CI is set (see conftest).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nix_formats import nix32
from nix_formats.errors import NarError
from nix_formats.hash import HASH_SIZES, format_hash, parse_nix_hash
from nix_formats.keys import PublicKey, SecretKey, sign_narinfo, verify_narinfo
from nix_formats.nar import dump_path, nar_hash_of_path
from nix_formats.nar_parser import NarParser, validate_nar
from nix_formats.narinfo import NarInfo
from nix_formats.store_path import StorePath

pytestmark = pytest.mark.nix

# The fixtures' classes live in conftest.py (not importable as a module here).
Nix = Any
Closure = Any
NixKeys = Any


def path_info(nix: Nix, *args: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(nix.run("nix", "path-info", "--json", *args))
    return result


def narinfo_from_path_info(info: dict[str, Any]) -> NarInfo:
    """A NarInfo carrying what `nix path-info --json` says (narHash is SRI there)."""
    return NarInfo(
        store_path=StorePath.parse(info["path"]),
        url="nar/unused.nar",
        compression="none",
        nar_hash=info["narHash"],
        nar_size=info["narSize"],
        references=[StorePath.parse(r).basename for r in info["references"]],
    )


# -- hashes and nix32 -------------------------------------------------------------------


@pytest.mark.parametrize("algo", sorted(HASH_SIZES))
def test_nix32_matches_nix_on_random_digests(nix: Nix, algo: str) -> None:
    rng = random.Random(algo)
    size = HASH_SIZES[algo]
    digests = [bytes(rng.randrange(256) for _ in range(size)) for _ in range(40)]
    digests += [bytes(size), b"\xff" * size, b"\x01" + bytes(size - 1), bytes(size - 1) + b"\x80"]
    out = nix.text("nix", "hash", "to-base32", "--type", algo, *(d.hex() for d in digests))
    theirs = out.split()
    assert theirs == [nix32.encode(d) for d in digests]
    assert [nix32.decode(t) for t in theirs] == digests
    sri = nix.text("nix", "hash", "to-sri", "--type", algo, *theirs).split()
    assert sri == [format_hash(algo, d, "sri") for d in digests]
    assert [parse_nix_hash(s) for s in sri] == [(algo, d) for d in digests]


def test_hash_file_matches(nix: Nix, tmp_path: Path) -> None:
    f = tmp_path / "abc"
    f.write_bytes(b"abc")
    base32 = nix.text("nix", "hash", "file", "--base32", f)
    assert base32 == nix32.encode(hashlib.sha256(b"abc").digest())


# -- NAR ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1 << 20, 4096])
def test_dump_tree_matches_nix_store_dump(nix: Nix, tree: Path, chunk_size: int) -> None:
    theirs = nix.run("nix-store", "--dump", tree)
    assert b"".join(dump_path(tree, chunk_size=chunk_size)) == theirs


def test_dump_single_file_and_symlink_match(nix: Nix, tree: Path) -> None:
    for p in (tree / "exe", tree / "emptyfile", tree / "big", tree / "link", tree / "dangling"):
        assert b"".join(dump_path(p)) == nix.run("nix-store", "--dump", p), p


def test_nar_hash_matches_nix_hash_path(nix: Nix, tree: Path) -> None:
    digest, size = nar_hash_of_path(tree)
    assert nix.text("nix", "hash", "path", "--base32", tree) == nix32.encode(digest)
    assert parse_nix_hash(nix.text("nix", "hash", "path", tree)) == ("sha256", digest)
    assert size == len(nix.run("nix-store", "--dump", tree))


def test_parser_accepts_nix_dump_in_random_pieces(nix: Nix, tree: Path) -> None:
    data = nix.run("nix-store", "--dump", tree)
    whole = validate_nar([data])
    assert whole.sha256 == hashlib.sha256(data).digest()
    assert (whole.regular_files, whole.executables, whole.symlinks, whole.directories) == (
        16,
        1,
        3,
        6,
    )
    rng = random.Random(1)
    for _ in range(5):
        parser = NarParser()
        pos = 0
        while pos < len(data):
            n = rng.choice([1, 2, 5, 8, 13, 100, 4096, 70000])
            parser.feed(data[pos : pos + n])
            pos += n
        assert parser.finish() == whole


def test_parser_rejects_truncated_and_corrupted_nix_dumps(nix: Nix, tree: Path) -> None:
    data = nix.run("nix-store", "--dump", tree)
    rng = random.Random(2)
    for cut in [0, 1, 8, 23, 24, len(data) // 2, len(data) - 8, len(data) - 1]:
        with pytest.raises(NarError, match="truncated NAR"):
            validate_nar([data[:cut]])
    for _ in range(20):
        cut = rng.randrange(len(data))
        with pytest.raises(NarError, match=f"byte offset {cut}: truncated NAR"):
            validate_nar([data[:cut]])
    # Swap the first two entries of the root directory: order violation.
    b_entry = data.index(b"\x01\x00\x00\x00\x00\x00\x00\x00B\0\0\0\0\0\0\0")
    corrupt = bytearray(data)
    corrupt[b_entry + 8] = ord("c")
    with pytest.raises(NarError, match="entry '_' comes after 'c'"):
        validate_nar([bytes(corrupt)])
    # An entry name with a '/'.
    corrupt = bytearray(data)
    corrupt[b_entry + 8] = ord("/")
    with pytest.raises(NarError, match="entry name '/' contains '/'"):
        validate_nar([bytes(corrupt)])
    with pytest.raises(NarError, match="unexpected data after the end of the NAR"):
        validate_nar([data, b"\0" * 8])


def test_store_path_nar_matches(nix: Nix, tree_factory: Callable[[str], Path]) -> None:
    src = tree_factory("nixfmt-added-tree")
    out = nix.text("nix-store", "--add", src)
    sp = StorePath.parse(out)
    assert sp.name == "nixfmt-added-tree"
    assert b"".join(dump_path(out)) == nix.run("nix-store", "--dump", out)
    digest, size = nar_hash_of_path(out)
    [info] = path_info(nix, out)
    assert parse_nix_hash(info["narHash"]) == ("sha256", digest)
    assert info["narSize"] == size
    # The store copy serialises exactly like the source tree.
    assert nar_hash_of_path(src) == (digest, size)


def test_built_paths_nar_match(nix: Nix, closure: Closure) -> None:
    for p in (closure.a, closure.b):
        assert b"".join(dump_path(p)) == nix.run("nix-store", "--dump", p)
        [info] = path_info(nix, p)
        assert parse_nix_hash(info["narHash"])[1] == nar_hash_of_path(p)[0]


# -- keys and signatures --------------------------------------------------------------------


def test_nix_generated_keys_load(nix_keys: NixKeys) -> None:
    sk = SecretKey.load(nix_keys.secret_file)
    pk = PublicKey.load(nix_keys.public_file)
    assert sk.name == pk.name == nix_keys.name
    assert sk.public_key() == pk
    assert sk.text() == nix_keys.secret_file.read_text()
    assert pk.text() == nix_keys.public_file.read_text()


@pytest.fixture
def chroot_store(nix: Nix, closure: Closure, tmp_path: Path) -> Path:
    """A throwaway local store holding the closure, so signing leaves /nix/store alone."""
    root = tmp_path / "root"
    nix.run("nix", "copy", "--no-check-sigs", "--to", root, closure.b)
    return root


def test_our_sig_equals_nix_store_sign(
    nix: Nix, closure: Closure, nix_keys: NixKeys, chroot_store: Path
) -> None:
    store = ["--store", str(chroot_store)]
    nix.run("nix", "store", "sign", *store, "--key-file", nix_keys.secret_file, "-r", closure.b)
    infos = path_info(nix, *store, "--sigs", "-r", closure.b)
    assert {i["path"] for i in infos} == {closure.a, closure.b}
    sk = SecretKey.load(nix_keys.secret_file)
    pk = PublicKey.load(nix_keys.public_file)
    for info in infos:
        [nix_sig] = [s for s in info["signatures"] if s.startswith(f"{nix_keys.name}:")]
        narinfo = narinfo_from_path_info(info)
        assert sk.sign(narinfo.fingerprint()) == nix_sig
        assert pk.verify(narinfo.fingerprint(), nix_sig)
        narinfo.sigs.append(nix_sig)
        assert verify_narinfo(narinfo, [pk])


# -- narinfo files written by nix copy ------------------------------------------------------


def copy_to_cache(nix: Nix, cache: Path, closure: Closure, query: str) -> list[Path]:
    nix.run("nix", "copy", "--to", f"file://{cache}?{query}", closure.b)
    files = sorted(cache.glob("*.narinfo"))
    assert len(files) == 2
    return files


@pytest.mark.parametrize("compression", ["xz", "none", "zstd"])
def test_nix_copy_narinfo_round_trip_and_signatures(
    nix: Nix, closure: Closure, nix_keys: NixKeys, tmp_path: Path, compression: str
) -> None:
    cache = tmp_path / "cache"
    files = copy_to_cache(
        nix, cache, closure, f"compression={compression}&secret-key={nix_keys.secret_file}"
    )
    pk = PublicKey.load(nix_keys.public_file)
    sk = SecretKey.load(nix_keys.secret_file)
    by_path = {}
    for f in files:
        text = f.read_text()
        info = NarInfo.parse(text)
        assert info.render() == text
        assert f.name == f"{info.store_path.hash_part}.narinfo"
        assert info.compression == compression
        assert verify_narinfo(info, [pk])
        assert not verify_narinfo(info, [SecretKey.generate(nix_keys.name).public_key()])
        assert info.sigs == [sk.sign(info.fingerprint())]
        nar_file = cache / info.url
        raw = nar_file.read_bytes()
        assert info.file_size == len(raw)
        assert info.file_hash is not None
        assert parse_nix_hash(info.file_hash)[1] == hashlib.sha256(raw).digest()
        if compression == "none":
            stats = validate_nar([raw])
            assert stats.sha256 == info.nar_hash_digest()
            assert stats.nar_size == info.nar_size
        digest, size = nar_hash_of_path(info.store_path.path)
        assert (digest, size) == (info.nar_hash_digest(), info.nar_size)
        by_path[info.store_path.path] = info
    assert by_path[closure.b].reference_paths() == [closure.a]
    assert by_path[closure.a].references == []


def test_nix_accepts_our_signatures(
    nix: Nix, closure: Closure, nix_keys: NixKeys, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    files = copy_to_cache(nix, cache, closure, "compression=none")
    trusted = ["--trusted-public-keys", nix_keys.public_file.read_text()]
    verify = ["nix", "store", "verify", "--store", f"file://{cache}", *trusted, "-r", closure.b]
    unsigned = nix.attempt(*verify)
    assert unsigned.returncode != 0
    assert b"is untrusted" in unsigned.stderr
    sk = SecretKey.load(nix_keys.secret_file)
    for f in files:
        info = NarInfo.parse(f.read_text())
        sign_narinfo(info, sk)
        f.write_text(info.render())
    nix.run(*verify)

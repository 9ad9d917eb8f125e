"""narinfo <-> record: the record key, the NAR URL, the stored form of a narinfo, and the
checks a reader makes on a record's narinfo (no network needed)."""

from __future__ import annotations

import hashlib

import pytest

from nix_formats.hash import format_sha256_nix32
from nix_formats.keys import SecretKey, sign_narinfo, verify_narinfo
from nix_formats.narinfo import NarInfo
from nix_formats.store_path import StorePath
from nix_records import (
    STORED_COMPRESSION,
    RecordContentError,
    nar_url,
    narinfo_from_record,
    narinfo_record,
    new_narinfo,
    record_key,
    stored_narinfo,
)
from storage_network import Manifest, PublisherKey, Record
from storage_network.wire.manifest import ChunkRef

KEY = SecretKey.generate("records-test-1")
PATH = StorePath.parse_basename("0" * 31 + "1-hello-2.12")
DEP = "/nix/store/" + "2" * 32 + "-glibc-2.38"
DRV = "/nix/store/" + "3" * 32 + "-hello-2.12.drv"
NAR_HASH = hashlib.sha256(b"a NAR").digest()


def manifest(*sizes: tuple[int, int]) -> Manifest:
    """A manifest of chunks of the given (size, stored size) in bytes."""
    return Manifest("isa_l_rs_cauchy", 4, 2, tuple(
        ChunkRef(bytes([i]) * 32, bytes(32), size, stored)
        for i, (size, stored) in enumerate(sizes)))


def record(metadata: bytes, payload: Manifest, key: str = PATH.hash_part) -> Record:
    return Record(key=key, publisher=PublisherKey(KEY.name, KEY.signing_key.verify_key),
                  metadata=metadata, manifest=payload, created=1)


def signed(payload: Manifest) -> NarInfo:
    narinfo = new_narinfo(PATH, NAR_HASH, payload.size, payload, references=[DEP, PATH.path],
                          deriver=DRV)
    sign_narinfo(narinfo, KEY)
    return narinfo


def test_record_key_is_the_store_path_hash_part() -> None:
    assert record_key(PATH.hash_part) == PATH.hash_part


def test_nar_url_names_path_and_hash() -> None:
    assert nar_url(PATH, bytes(32)) == f"nar/{PATH.hash_part}-{'0' * 52}.nar.zst"
    assert nar_url(PATH, NAR_HASH) == \
        f"nar/{PATH.hash_part}-{format_sha256_nix32(NAR_HASH)[7:]}.nar.zst"


def test_new_narinfo_is_the_stored_form() -> None:
    payload = manifest((1000, 400), (24, 30))
    narinfo = new_narinfo(PATH, NAR_HASH, 1024, payload, references=[DEP], deriver=DRV,
                          ca="fixed:r:sha256:" + "1" * 52)
    assert narinfo.url == nar_url(PATH, NAR_HASH)
    assert narinfo.compression == STORED_COMPRESSION == "zstd"
    assert (narinfo.file_hash, narinfo.file_size) == (None, 430)
    assert narinfo.nar_hash == format_sha256_nix32(NAR_HASH) and narinfo.nar_size == 1024
    assert narinfo.references == ["2" * 32 + "-glibc-2.38"]
    assert narinfo.deriver == "3" * 32 + "-hello-2.12.drv"
    assert narinfo.sigs == [] and narinfo.ca == "fixed:r:sha256:" + "1" * 52
    bare = new_narinfo(PATH, NAR_HASH, 1024, payload)
    assert bare.references == [] and bare.deriver is None and bare.ca is None


def test_stored_narinfo_keeps_the_signatures_valid() -> None:
    uploaded = NarInfo.parse(
        f"StorePath: {PATH.path}\nURL: nar/{'4' * 52}.nar.xz\nCompression: xz\n"
        f"FileHash: sha256:{'1' * 52}\nFileSize: 77\nNarHash: {format_sha256_nix32(NAR_HASH)}\n"
        f"NarSize: 1024\nReferences: {'2' * 32}-glibc-2.38\nSystem: x86_64-linux\n")
    sign_narinfo(uploaded, KEY)
    payload = manifest((1024, 300))
    stored = stored_narinfo(uploaded, payload)
    assert stored.url == nar_url(PATH, NAR_HASH) and stored.compression == "zstd"
    assert (stored.file_hash, stored.file_size) == (None, 300)
    assert stored.system == "x86_64-linux" and stored.sigs == uploaded.sigs
    assert stored.sigs is not uploaded.sigs and stored.references is not uploaded.references
    assert uploaded.url.endswith(".nar.xz")  # the original is left alone
    assert verify_narinfo(stored, [KEY.public_key()])


def test_narinfo_round_trips_through_a_record() -> None:
    payload = manifest((1000, 400), (24, 30))
    narinfo = signed(payload)
    content = narinfo_record(narinfo)
    assert content.key == PATH.hash_part and content.metadata == narinfo.render().encode()
    back, text = narinfo_from_record(PATH.hash_part, record(content.metadata, payload))
    assert text == narinfo.render() and back == narinfo
    assert verify_narinfo(back, [KEY.public_key()])


@pytest.mark.parametrize("metadata, payload, match", [
    (b"\xff\xfe not utf-8", manifest((1024, 1)), "malformed narinfo"),
    (b"StorePath: /nix/store/x\n", manifest((1024, 1)), "malformed narinfo"),
    (b"", manifest((1024, 1)), "malformed narinfo"),
    (None, manifest((1023, 1)), "NarSize 1024 but manifest holds 1023 bytes"),
])
def test_a_record_that_is_not_its_paths_narinfo_is_refused(
        metadata: bytes | None, payload: Manifest, match: str) -> None:
    if metadata is None:
        metadata = signed(manifest((1024, 1))).render().encode()
    with pytest.raises(RecordContentError, match=match):
        narinfo_from_record(PATH.hash_part, record(metadata, payload))


def test_a_record_describing_another_path_is_refused() -> None:
    payload = manifest((1024, 1))
    other = "5" * 32
    with pytest.raises(RecordContentError, match=f"record {other} describes {PATH.path}"):
        narinfo_from_record(other, record(signed(payload).render().encode(), payload, other))

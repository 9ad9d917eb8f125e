"""Sealed manifests (storage_network.wire.manifest, version 2) and sealed record metadata
(storage_network.wire.sealed_metadata), and signed records around them."""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import replace

import pytest
from nacl.signing import SigningKey

from storage_network.coding.sealing import SEAL_OVERHEAD, CacheSecret, Keyring, seal
from storage_network.errors import RecordError, SealError
from storage_network.wire.manifest import (
    MAGIC,
    SEALED,
    VERSION,
    VERSION_FLAGS,
    ChunkRef,
    Manifest,
    make_manifest,
)
from storage_network.wire.record import open_record, seal_record
from storage_network.wire.sealed_metadata import MAGIC as SEALED_MAGIC
from storage_network.wire.sealed_metadata import (
    MAX_LINKS,
    is_sealed,
    open_metadata,
    open_sealed_record,
    public_links,
    seal_metadata,
    sealing_secret_id,
)
from storage_network.wire.write_auth import Publisher

CODEC = "isa_l_rs_cauchy"
SECRET = CacheSecret("meta-test-1", bytes([11]) * 32)
OTHER = CacheSecret("meta-test-2", bytes([12]) * 32)
PLAIN_KEY = "0123456789abcdfghijklmnpqrsvwxyz"
RECORD_KEY = SECRET.record_key(PLAIN_KEY)
METADATA = (b"StorePath: /nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12\n"
            b"URL: nar/abc.nar.zst\nCompression: zstd\nNarSize: 123456\n")


def public_refs(count: int, seed: int = 0) -> list[ChunkRef]:
    rng = random.Random(seed)
    return [ChunkRef(rng.randbytes(32), rng.randbytes(32), rng.randrange(1, 1 << 32),
                     rng.randrange(1, 1 << 32)) for _ in range(count)]


def sealed_refs(count: int, seed: int = 0) -> list[ChunkRef]:
    """Refs as a private cache's codec makes them: keyed, sizes set, keys on."""
    rng = random.Random(seed)
    return [ChunkRef(rng.randbytes(32), rng.randbytes(32), rng.randrange(1, 1 << 20),
                     rng.randrange(SEAL_OVERHEAD, 1 << 20), rng.randbytes(32))
            for _ in range(count)]


def sealed_manifest(count: int = 3, seed: int = 0) -> Manifest:
    return make_manifest(CODEC, 4, 2, sealed_refs(count, seed), sealed=True)


def v1_bytes(codec: str, k: int, m: int, refs: list[ChunkRef]) -> bytes:
    """The version 1 layout, built by hand."""
    name = codec.encode("ascii")
    out = b"NXSM" + bytes([1, len(name)]) + name + struct.pack(">HHI", k, m, len(refs))
    for c in refs:
        out += struct.pack(">32s32sII", c.chunk_id, c.root, c.size, c.stored_size)
    return out


# --- manifests ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 7])
def test_public_manifest_is_version_1_as_before(count: int) -> None:
    refs = public_refs(count, seed=count)
    manifest = make_manifest(CODEC, 4, 2, refs)
    assert not manifest.sealed
    data = manifest.encode()
    assert data == v1_bytes(CODEC, 4, 2, refs)
    assert data[4] == VERSION == 1
    assert Manifest.decode(data) == manifest
    assert not Manifest.decode(data).sealed


def test_public_manifest_with_other_parameters_as_before() -> None:
    refs = public_refs(2, seed=9)
    manifest = make_manifest("liberasurecode_rs_vand", 16, 24, refs)
    assert manifest.encode() == v1_bytes("liberasurecode_rs_vand", 16, 24, refs)


def test_public_manifest_ignores_keys_in_bytes() -> None:
    refs = public_refs(2, seed=3)
    keyed = [replace(c, key=bytes([0xAB]) * 32) for c in refs]
    assert make_manifest(CODEC, 4, 2, keyed).encode() == v1_bytes(CODEC, 4, 2, refs)


def test_sealed_manifest_layout() -> None:
    refs = sealed_refs(3, seed=1)
    manifest = make_manifest(CODEC, 4, 2, refs, sealed=True)
    data = manifest.encode()
    assert data[:4] == MAGIC
    assert data[4] == VERSION_FLAGS == 2
    assert data[5] == SEALED == 1
    name = CODEC.encode()
    assert data[6] == len(name) and data[7:7 + len(name)] == name
    off = 7 + len(name)
    assert struct.unpack_from(">HHI", data, off) == (4, 2, 3)
    off += 8
    assert len(data) == off + 72 * 3
    for i, c in enumerate(refs):
        entry = struct.unpack_from(">32s32sII", data, off + 72 * i)
        assert entry == (c.chunk_id, c.root, 0, c.stored_size)
        assert c.size != 0
    # exactly one flags byte more than the same chunks as version 1 with zero sizes
    zero = [replace(c, size=0) for c in refs]
    v1 = v1_bytes(CODEC, 4, 2, zero)
    assert data == v1[:4] + bytes([2, 1]) + v1[5:]


def test_sealed_manifest_never_holds_keys_or_sizes() -> None:
    refs = sealed_refs(5, seed=2)
    data = make_manifest(CODEC, 4, 2, refs, sealed=True).encode()
    for c in refs:
        assert c.key not in data
        assert struct.pack(">I", c.size) not in data


def test_sealed_manifest_round_trip_keeps_sealed() -> None:
    manifest = sealed_manifest(4, seed=5)
    decoded = Manifest.decode(manifest.encode())
    assert decoded.sealed
    assert (decoded.codec, decoded.k, decoded.m) == (CODEC, 4, 2)
    assert [c.chunk_id for c in decoded.chunks] == [c.chunk_id for c in manifest.chunks]
    assert [c.root for c in decoded.chunks] == [c.root for c in manifest.chunks]
    assert [c.stored_size for c in decoded.chunks] == [c.stored_size for c in manifest.chunks]
    assert all(c.size == 0 and c.key == b"" for c in decoded.chunks)
    assert decoded == replace(manifest, chunks=tuple(replace(c, size=0)
                                                     for c in manifest.chunks))
    assert decoded.encode() == manifest.encode()
    assert Manifest.decode(memoryview(manifest.encode())) == decoded


def test_empty_sealed_manifest_round_trip() -> None:
    manifest = make_manifest(CODEC, 4, 2, [], sealed=True)
    decoded = Manifest.decode(manifest.encode())
    assert decoded.sealed and decoded.chunks == ()


@pytest.mark.parametrize("flags", [0x02, 0x03, 0x80, 0xFF])
def test_unknown_flag_bits(flags: int) -> None:
    data = bytearray(sealed_manifest(1).encode())
    data[5] = flags
    with pytest.raises(RecordError, match=f"manifest: unknown flags {flags:#04x}"):
        Manifest.decode(bytes(data))


def test_version_2_without_the_sealed_flag_is_public() -> None:
    refs = public_refs(2, seed=4)
    v1 = v1_bytes(CODEC, 4, 2, refs)
    decoded = Manifest.decode(v1[:4] + bytes([2, 0]) + v1[5:])
    assert not decoded.sealed
    assert decoded.chunks == tuple(refs)


def test_truncated_version_2_header() -> None:
    with pytest.raises(RecordError, match="manifest: truncated header"):
        Manifest.decode(b"NXSM\x02\x01")
    with pytest.raises(RecordError, match="manifest: truncated header"):
        Manifest.decode(sealed_manifest(0).encode()[:-1])


@pytest.mark.parametrize("stored", [0, 1, SEAL_OVERHEAD - 1])
def test_sealed_chunk_shorter_than_its_seal(stored: int) -> None:
    refs = sealed_refs(3, seed=6)
    refs[1] = replace(refs[1], stored_size=stored)
    data = make_manifest(CODEC, 4, 2, refs, sealed=True).encode()
    with pytest.raises(RecordError, match="a sealed chunk shorter than its seal"):
        Manifest.decode(data)


def test_sealed_chunk_with_its_size_in_the_clear_is_refused() -> None:
    data = bytearray(sealed_manifest(2).encode())
    entry = len(data) - 2 * 72  # the first entry: id, root, then the u32 size
    struct.pack_into(">I", data, entry + 64, 4096)
    with pytest.raises(RecordError, match="with its size in the clear"):
        Manifest.decode(bytes(data))


def test_sealed_chunk_of_exactly_the_seal_is_accepted() -> None:
    refs = sealed_refs(1, seed=7)
    refs[0] = replace(refs[0], stored_size=SEAL_OVERHEAD)
    decoded = Manifest.decode(make_manifest(CODEC, 4, 2, refs, sealed=True).encode())
    assert decoded.chunks[0].stored_size == SEAL_OVERHEAD
    # a public chunk may be that short
    public = public_refs(1)
    public[0] = replace(public[0], stored_size=1)
    assert Manifest.decode(make_manifest(CODEC, 4, 2, public).encode()).chunks == tuple(public)


def test_frame_sizes() -> None:
    refs = [ChunkRef(bytes([i]) * 32, bytes(32), 1000, 100 * (i + 1)) for i in range(3)]
    public = make_manifest(CODEC, 4, 2, refs)
    sealed = make_manifest(CODEC, 4, 2, refs, sealed=True)
    assert [public.frame_size(c) for c in refs] == [100, 200, 300]
    assert [sealed.frame_size(c) for c in refs] == [100 - SEAL_OVERHEAD, 200 - SEAL_OVERHEAD,
                                                    300 - SEAL_OVERHEAD]
    assert public.frames_size == public.stored_size == 600
    assert sealed.stored_size == 600
    assert sealed.frames_size == 600 - 3 * SEAL_OVERHEAD
    assert sealed.frames_size == sum(sealed.frame_size(c) for c in refs)
    empty = make_manifest(CODEC, 4, 2, [], sealed=True)
    assert empty.frames_size == 0


def test_with_secrets_puts_keys_and_sizes_back() -> None:
    decoded = Manifest.decode(sealed_manifest(3, seed=8).encode())
    secrets = [(bytes([i]) * 32, 1000 + i) for i in range(3)]
    full = decoded.with_secrets(secrets)
    assert [(c.key, c.size) for c in full.chunks] == secrets
    assert full.sealed
    assert [c.chunk_id for c in full.chunks] == [c.chunk_id for c in decoded.chunks]
    assert full.size == 3003
    assert full.encode() == decoded.encode()


@pytest.mark.parametrize("count", [0, 2, 4])
def test_with_secrets_wrong_count(count: int) -> None:
    manifest = sealed_manifest(3)
    with pytest.raises(RecordError, match=f"manifest: {count} chunk keys for 3 chunks"):
        manifest.with_secrets([(bytes(32), 1)] * count)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_with_secrets_wrong_key_length(size: int) -> None:
    manifest = sealed_manifest(2)
    with pytest.raises(RecordError, match="a chunk key that is not 32 bytes"):
        manifest.with_secrets([(bytes(32), 1), (bytes(size), 1)])


# --- sealed metadata ----------------------------------------------------------------------


def test_sealed_metadata_round_trip() -> None:
    manifest = sealed_manifest(4, seed=10)
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, manifest)
    assert is_sealed(sealed) and sealed.startswith(SEALED_MAGIC)
    assert sealed[4] == 2 and sealed[5:13] == SECRET.secret_id
    assert sealed[13:16] == b"\x00\x00\x00", "no flags, no links"
    assert public_links(sealed) == ((), False)
    decoded = Manifest.decode(manifest.encode())
    metadata, opened = open_metadata(Keyring([SECRET]), RECORD_KEY, sealed, decoded)
    assert metadata == METADATA
    assert opened.sealed
    assert [c.key for c in opened.chunks] == [c.key for c in manifest.chunks]
    assert [c.size for c in opened.chunks] == [c.size for c in manifest.chunks]
    assert opened.chunks == manifest.chunks
    assert opened.size == manifest.size


def test_sealed_metadata_with_no_chunks_and_empty_metadata() -> None:
    manifest = make_manifest(CODEC, 4, 2, [], sealed=True)
    sealed = seal_metadata(SECRET, RECORD_KEY, b"", manifest)
    assert open_metadata(Keyring([SECRET]), RECORD_KEY, sealed, manifest) == (b"", manifest)


def test_sealed_metadata_opens_with_an_older_secret_of_the_keyring() -> None:
    manifest = sealed_manifest(2, seed=11)
    sealed = seal_metadata(OTHER, RECORD_KEY, METADATA, manifest)
    ring = Keyring([SECRET, OTHER])
    metadata, opened = open_metadata(ring, RECORD_KEY, sealed, manifest)
    assert metadata == METADATA and opened.chunks == manifest.chunks


def test_sealed_metadata_is_deterministic() -> None:
    manifest = sealed_manifest(2, seed=12)
    assert (seal_metadata(SECRET, RECORD_KEY, METADATA, manifest)
            == seal_metadata(SECRET, RECORD_KEY, METADATA, manifest))


def test_open_with_a_keyring_lacking_the_secret() -> None:
    manifest = sealed_manifest(2, seed=13)
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, manifest)
    with pytest.raises(SealError) as info:
        open_metadata(Keyring([OTHER]), RECORD_KEY, sealed, manifest)
    message = str(info.value)
    assert SECRET.secret_id.hex() in message
    assert RECORD_KEY in message
    assert "does not hold" in message


def test_open_under_another_record_key() -> None:
    manifest = sealed_manifest(2, seed=14)
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, manifest)
    moved = SECRET.record_key("zyxwvsrqpnmlkjihgfdcba9876543210")
    with pytest.raises(SealError, match=f"record {moved}: .*do not open"):
        open_metadata(Keyring([SECRET]), moved, sealed, manifest)


def test_open_with_another_manifest() -> None:
    manifest = sealed_manifest(2, seed=15)
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, manifest)
    ring = Keyring([SECRET])
    other = sealed_manifest(2, seed=16)
    with pytest.raises(SealError, match="do not open"):
        open_metadata(ring, RECORD_KEY, sealed, other)
    # one stripe root changed is another manifest too
    swapped = replace(manifest, chunks=(manifest.chunks[0],
                                        replace(manifest.chunks[1], root=bytes(32))))
    with pytest.raises(SealError, match="do not open"):
        open_metadata(ring, RECORD_KEY, sealed, swapped)


@pytest.mark.parametrize("position", [13, 20, 40, -1, -17])
def test_open_tampered(position: int) -> None:
    manifest = sealed_manifest(2, seed=17)
    sealed = bytearray(seal_metadata(SECRET, RECORD_KEY, METADATA, manifest))
    sealed[position] ^= 0x01
    with pytest.raises(SealError, match="do not open"):
        open_metadata(Keyring([SECRET]), RECORD_KEY, bytes(sealed), manifest)


def test_open_tampered_secret_id() -> None:
    manifest = sealed_manifest(2, seed=18)
    sealed = bytearray(seal_metadata(SECRET, RECORD_KEY, METADATA, manifest))
    sealed[6] ^= 0x01
    with pytest.raises(SealError, match="which the keyring does not hold"):
        open_metadata(Keyring([SECRET]), RECORD_KEY, bytes(sealed), manifest)


@pytest.mark.parametrize("version", [0, 3, 0xFF])
def test_open_unknown_version(version: int) -> None:
    manifest = sealed_manifest(1, seed=19)
    sealed = bytearray(seal_metadata(SECRET, RECORD_KEY, METADATA, manifest))
    sealed[4] = version
    with pytest.raises(SealError, match=f"sealed metadata version {version} is not 1 or 2"):
        open_metadata(Keyring([SECRET]), RECORD_KEY, bytes(sealed), manifest)
    with pytest.raises(SealError, match=f"version {version}"):
        public_links(bytes(sealed))


def test_a_version_2_record_relabelled_version_1_does_not_open() -> None:
    """The version byte is in the additional data: no downgrade to hide the links."""
    manifest = sealed_manifest(1, seed=19)
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, manifest, links=[LINK_A])
    downgraded = sealed[:4] + b"\x01" + sealed[5:13] + sealed[13 + 3 + 32:]
    with pytest.raises(SealError, match="do not open"):
        open_metadata(Keyring([SECRET]), RECORD_KEY, downgraded, manifest)


@pytest.mark.parametrize("metadata", [METADATA, b"", b"NXSP", b"NXSP\x01short",
                                      b"nxsp" + bytes(60)])
def test_open_metadata_that_is_not_sealed(metadata: bytes) -> None:
    with pytest.raises(SealError, match=f"record {RECORD_KEY}: its metadata is not sealed"):
        open_metadata(Keyring([SECRET]), RECORD_KEY, metadata, sealed_manifest(1))


def test_is_sealed() -> None:
    assert not is_sealed(METADATA)
    assert not is_sealed(b"")
    assert is_sealed(seal_metadata(SECRET, RECORD_KEY, METADATA, sealed_manifest(1)))


def test_metadata_plaintext_is_not_in_the_sealed_bytes() -> None:
    manifest = sealed_manifest(3, seed=20)
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, manifest)
    assert len(sealed) >= len(METADATA) + 3 * 36 + SEAL_OVERHEAD
    for line in METADATA.splitlines():
        assert line not in sealed
    for word in (b"StorePath", b"hello-2.12", b"/nix/store", b"NarSize"):
        assert word not in sealed
    for c in manifest.chunks:
        assert c.key not in sealed
        assert c.key[:8] not in sealed


# --- version 2: links in the clear ----------------------------------------------------------


LINK_A = SECRET.record_key("a" * 32)
LINK_B = OTHER.record_key("b" * 32)


def v1_sealed(secret: CacheSecret, record_key: str, metadata: bytes,
              manifest: Manifest) -> bytes:
    """Version 1 sealed metadata, built by hand as publishers wrote it before links."""
    plain = struct.pack(">I", len(metadata)) + metadata + b"".join(
        struct.pack(">32sI", c.key, c.size) for c in manifest.chunks)
    aad = (b"nixshard-sealed-metadata\n" + record_key.encode()
           + hashlib.sha256(manifest.encode()).digest())
    return SEALED_MAGIC + b"\x01" + secret.secret_id + seal(secret.metadata_key, plain, aad)


@pytest.mark.parametrize("pin", [False, True])
def test_version_2_round_trip_with_links(pin: bool) -> None:
    manifest = sealed_manifest(3, seed=30)
    links = [LINK_A, LINK_B]
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, manifest, links=links, pin=pin)
    assert sealed[:5] == SEALED_MAGIC + b"\x02" and sealed[5:13] == SECRET.secret_id
    assert sealed[13] == (1 if pin else 0)
    assert struct.unpack_from(">H", sealed, 14) == (2,)
    assert sealed[16:16 + 64] == (LINK_A + LINK_B).encode()
    assert public_links(sealed) == ((LINK_A, LINK_B), pin)
    metadata, opened = open_metadata(Keyring([SECRET]), RECORD_KEY, sealed,
                                     Manifest.decode(manifest.encode()))
    assert metadata == METADATA and opened.chunks == manifest.chunks
    # the metadata, the chunk keys and the plain keys stay sealed
    assert METADATA not in sealed and b"a" * 32 not in sealed and b"b" * 32 not in sealed


def test_version_2_with_many_links_and_a_bound() -> None:
    manifest = sealed_manifest(1, seed=31)
    links = sorted({SECRET.record_key(f"{i:032d}") for i in range(500)})
    sealed = seal_metadata(SECRET, RECORD_KEY, b"", manifest, links=links, pin=True)
    assert public_links(sealed) == (tuple(links), True)
    assert open_metadata(Keyring([SECRET]), RECORD_KEY, sealed, manifest)[0] == b""
    with pytest.raises(ValueError, match=f"at most {MAX_LINKS} links"):
        seal_metadata(SECRET, RECORD_KEY, b"", manifest, links=[LINK_A] * (MAX_LINKS + 1))


@pytest.mark.parametrize("link", ["short", "A" * 32, "x" * 31 + "-", "é" * 32, ""])
def test_seal_metadata_refuses_a_link_that_is_not_a_record_key(link: str) -> None:
    with pytest.raises(ValueError, match="not record keys"):
        seal_metadata(SECRET, RECORD_KEY, METADATA, sealed_manifest(1), links=[LINK_A, link])


@pytest.mark.parametrize("position", [13, 14, 15, 16, 30, 16 + 63])
def test_a_tampered_prefix_does_not_open(position: int) -> None:
    """Flags, count and links are in the additional data."""
    manifest = sealed_manifest(2, seed=32)
    sealed = bytearray(seal_metadata(SECRET, RECORD_KEY, METADATA, manifest,
                                     links=[LINK_A, LINK_B]))
    sealed[position] ^= 0x01
    with pytest.raises(SealError):
        open_metadata(Keyring([SECRET]), RECORD_KEY, bytes(sealed), manifest)


def test_a_swapped_link_does_not_open() -> None:
    manifest = sealed_manifest(2, seed=33)
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, manifest, links=[LINK_A])
    other = SECRET.record_key("c" * 32).encode()
    swapped = sealed[:16] + other + sealed[16 + 32:]
    assert public_links(swapped) == ((other.decode(),), False), "readable, yet not opened"
    with pytest.raises(SealError, match="do not open"):
        open_metadata(Keyring([SECRET]), RECORD_KEY, swapped, manifest)


def test_version_1_still_opens_and_has_no_public_links() -> None:
    manifest = sealed_manifest(3, seed=34)
    sealed = v1_sealed(SECRET, RECORD_KEY, METADATA, manifest)
    assert is_sealed(sealed) and sealed[4] == 1
    assert public_links(sealed) is None
    metadata, opened = open_metadata(Keyring([OTHER, SECRET]), RECORD_KEY, sealed,
                                     Manifest.decode(manifest.encode()))
    assert metadata == METADATA and opened.chunks == manifest.chunks
    tampered = bytearray(sealed)
    tampered[20] ^= 0x01
    with pytest.raises(SealError, match="do not open"):
        open_metadata(Keyring([SECRET]), RECORD_KEY, bytes(tampered), manifest)


def test_public_links_of_what_is_not_sealed_is_none() -> None:
    assert public_links(METADATA) is None
    assert public_links(b"") is None


@pytest.mark.parametrize("cut", [13, 14, 15, 16, 47])
def test_public_links_of_truncated_version_2(cut: int) -> None:
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, sealed_manifest(1),
                           links=[LINK_A, LINK_B])
    with pytest.raises(SealError, match="not sealed|truncated|does not hold"):
        public_links(sealed[:cut])
    with pytest.raises(SealError):
        open_metadata(Keyring([SECRET]), RECORD_KEY, sealed[:cut], sealed_manifest(1))


def test_public_links_refuses_malformed_links_and_unknown_flags() -> None:
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, sealed_manifest(1), links=[LINK_A])
    bad_char = sealed[:16] + b"!" + sealed[17:]
    with pytest.raises(RecordError, match="link 0 is not a record key"):
        public_links(bad_char)
    flags = sealed[:13] + b"\x02" + sealed[14:]
    with pytest.raises(RecordError, match="unknown flags 0x02"):
        public_links(flags)


def test_seal_metadata_refuses_a_public_manifest() -> None:
    refs = [replace(c, key=bytes(32)) for c in public_refs(2)]
    with pytest.raises(ValueError, match="needs a sealed manifest"):
        seal_metadata(SECRET, RECORD_KEY, METADATA, make_manifest(CODEC, 4, 2, refs))


def test_seal_metadata_refuses_a_chunk_without_key() -> None:
    manifest = sealed_manifest(2)
    keyless = replace(manifest, chunks=(manifest.chunks[0], replace(manifest.chunks[1], key=b"")))
    with pytest.raises(ValueError, match="every chunk key"):
        seal_metadata(SECRET, RECORD_KEY, METADATA, keyless)


# --- a signed record around them ----------------------------------------------------------


def test_sealed_record_opens_without_any_secret() -> None:
    """Audit, repair and gc: the signature checks and the manifest (keyed ids, roots,
    stored sizes) reads with no cache secret at all."""
    publisher = Publisher("sealed-rec-1", SigningKey(bytes([5]) * 32))
    manifest = sealed_manifest(4, seed=21)
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, manifest)
    envelope = seal_record(publisher, RECORD_KEY, sealed, manifest, created=1_700_000_000)
    assert METADATA not in envelope
    for c in manifest.chunks:
        assert c.key not in envelope
    record = open_record({publisher.name: publisher.public}, RECORD_KEY, envelope)
    assert record.key == RECORD_KEY
    assert record.created == 1_700_000_000
    assert not record.tombstone
    assert record.metadata == sealed
    assert record.manifest.sealed
    assert [c.chunk_id for c in record.manifest.chunks] == [c.chunk_id for c in manifest.chunks]
    assert [c.root for c in record.manifest.chunks] == [c.root for c in manifest.chunks]
    assert [c.stored_size for c in record.manifest.chunks] == \
        [c.stored_size for c in manifest.chunks]
    assert all(c.size == 0 and c.key == b"" for c in record.manifest.chunks)
    assert record.content_id == hashlib.sha256(
        b"".join(c.chunk_id for c in manifest.chunks)).digest()
    # and the holder of the secret opens what it read
    metadata, opened = open_metadata(Keyring([SECRET]), RECORD_KEY, record.metadata,
                                     record.manifest)
    assert metadata == METADATA and opened.chunks == manifest.chunks


def test_sealed_record_under_another_key_is_refused() -> None:
    publisher = Publisher("sealed-rec-2", SigningKey(bytes([6]) * 32))
    manifest = sealed_manifest(1, seed=22)
    envelope = seal_record(publisher, RECORD_KEY,
                           seal_metadata(SECRET, RECORD_KEY, METADATA, manifest), manifest)
    with pytest.raises(RecordError, match="bad signature"):
        open_record({publisher.name: publisher.public}, SECRET.record_key("x" * 32), envelope)


def test_open_sealed_record_keeps_the_keyed_key_or_takes_the_plain_one() -> None:
    """What a reader (the plain key) and gc (the keyed key) get from one record."""
    publisher = Publisher("sealed-rec-3", SigningKey(bytes([7]) * 32))
    manifest = sealed_manifest(3, seed=23)
    sealed = seal_metadata(SECRET, RECORD_KEY, METADATA, manifest)
    envelope = seal_record(publisher, RECORD_KEY, sealed, manifest)
    record = open_record({publisher.name: publisher.public}, RECORD_KEY, envelope)
    assert sealing_secret_id(record.metadata) == SECRET.secret_id
    assert sealing_secret_id(METADATA) is None
    ring = Keyring([OTHER, SECRET])
    for key, want in ((None, RECORD_KEY), (PLAIN_KEY, PLAIN_KEY)):
        opened = open_sealed_record(ring, record, key)
        assert opened.key == want and opened.metadata == METADATA
        assert opened.created == record.created and opened.digest == record.digest
        assert [(c.key, c.size) for c in opened.manifest.chunks] == \
            [(c.key, c.size) for c in manifest.chunks]
    public = make_manifest(CODEC, 4, 2, public_refs(1, seed=24))
    plain = open_record({publisher.name: publisher.public}, RECORD_KEY,
                        seal_record(publisher, RECORD_KEY, sealed, public))
    with pytest.raises(SealError, match=f"record {RECORD_KEY} \\(plain key {PLAIN_KEY}\\) "
                                        "is not sealed"):
        open_sealed_record(ring, plain, PLAIN_KEY)
    with pytest.raises(SealError, match="does not hold"):
        open_sealed_record(Keyring([OTHER]), record)

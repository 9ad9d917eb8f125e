"""Manifests (storage_network.wire.manifest) and signed records (storage_network.wire.record)."""

from __future__ import annotations

import hashlib
import os
import random
import struct

import pytest
from nacl.signing import SigningKey

from storage_network.coding.chunker import iter_chunks
from storage_network.config import ChunkingParams
from storage_network.errors import RecordError
from storage_network.wire.manifest import MAGIC, ChunkRef, Manifest, make_manifest
from storage_network.wire.record import MAGIC as RECORD_MAGIC
from storage_network.wire.record import open_record, seal_record
from storage_network.wire.write_auth import Publisher, PublisherKey

MIB = 1024 * 1024
KEY = "0123456789abcdfghijklmnpqrsvwxyz"
OTHER_KEY = "zyxwvsrqpnmlkjihgfdcba9876543210"


def sample_manifest(count: int = 5, seed: int = 0) -> Manifest:
    rng = random.Random(seed)
    chunks = [ChunkRef(rng.randbytes(32), rng.randbytes(32), rng.randrange(1, 1 << 32),
                       rng.randrange(1, 1 << 32)) for _ in range(count)]
    return make_manifest("isa_l_rs_cauchy", 4, 2, chunks)


# --- manifest -----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 5, 300])
def test_manifest_round_trip(count: int) -> None:
    manifest = sample_manifest(count)
    data = manifest.encode()
    assert data.startswith(MAGIC)
    assert len(data) == 4 + 2 + len("isa_l_rs_cauchy") + 8 + 72 * count
    decoded = Manifest.decode(data)
    assert decoded == manifest
    assert Manifest.decode(memoryview(data)) == manifest
    assert decoded.n == 6


def test_manifest_size_properties() -> None:
    chunks = [ChunkRef(bytes([i]) * 32, bytes([i + 1]) * 32, 1000 * (i + 1), 10 * (i + 1))
              for i in range(4)]
    manifest = make_manifest("isa_l_rs_cauchy", 10, 6, chunks)
    assert manifest.size == 1000 + 2000 + 3000 + 4000
    assert manifest.stored_size == 10 + 20 + 30 + 40
    assert manifest.n == 16
    empty = make_manifest("isa_l_rs_cauchy", 10, 6, [])
    assert (empty.size, empty.stored_size) == (0, 0)


def test_manifest_bytes_per_mib_at_default_chunking() -> None:
    """The brief: a few hundred bytes of manifest per MiB of payload."""
    payload = os.urandom(64 * MIB)
    params = ChunkingParams()
    assert params.avg_size == 256 * 1024
    refs = [ChunkRef(hashlib.sha256(c).digest(), bytes(32), len(c), len(c))
            for c in iter_chunks([payload], params)]
    manifest = make_manifest("isa_l_rs_cauchy", 16, 24, refs)
    assert manifest.size == len(payload)
    per_mib = len(manifest.encode()) / 64
    assert per_mib < 400, f"{per_mib:.0f} manifest bytes per MiB ({len(refs)} chunks)"


@pytest.mark.parametrize("cut", [1, 5, 20, 72])
def test_manifest_truncated_entries(cut: int) -> None:
    data = sample_manifest(3).encode()
    with pytest.raises(RecordError, match="entry bytes for 3 chunks of 72"):
        Manifest.decode(data[:-cut])


def test_manifest_truncated_header() -> None:
    data = sample_manifest(3).encode()
    with pytest.raises(RecordError, match="manifest: truncated header"):
        Manifest.decode(data[:8 + len("isa_l_rs_cauchy")])


def test_manifest_trailing_bytes() -> None:
    data = sample_manifest(3).encode()
    with pytest.raises(RecordError, match=r"manifest: 217 entry bytes for 3 chunks"):
        Manifest.decode(data + b"\x00")


def test_manifest_bad_magic() -> None:
    data = sample_manifest(1).encode()
    with pytest.raises(RecordError, match="manifest: bad magic"):
        Manifest.decode(b"NXSX" + data[4:])


def test_manifest_empty_input() -> None:
    with pytest.raises(RecordError, match="manifest: bad magic"):
        Manifest.decode(b"")


def test_manifest_bad_version() -> None:
    data = bytearray(sample_manifest(1).encode())
    data[4] = 3
    with pytest.raises(RecordError, match="manifest: unsupported version 3"):
        Manifest.decode(bytes(data))


def _with_params(k: int, m: int) -> bytes:
    data = bytearray(sample_manifest(1).encode())
    off = 6 + data[5]
    struct.pack_into(">HH", data, off, k, m)
    return bytes(data)


@pytest.mark.parametrize(("k", "m"), [(0, 2), (0, 0), (200, 57), (1, 65535)])
def test_manifest_impossible_parameters(k: int, m: int) -> None:
    with pytest.raises(RecordError, match=f"manifest: impossible k={k} m={m} chunks=1"):
        Manifest.decode(_with_params(k, m))


def test_manifest_largest_possible_stripe() -> None:
    assert Manifest.decode(_with_params(200, 56)).n == 256


def test_manifest_impossible_chunk_count() -> None:
    data = bytearray(sample_manifest(0).encode())
    struct.pack_into(">I", data, len(data) - 4, (1 << 24) + 1)
    with pytest.raises(RecordError, match="impossible k=4 m=2 chunks=16777217"):
        Manifest.decode(bytes(data))


# --- records ------------------------------------------------------------------------------


@pytest.fixture
def publisher() -> Publisher:
    return Publisher("rec-pub-1", SigningKey(bytes([3]) * 32))


@pytest.fixture
def keys(publisher: Publisher) -> dict[str, PublisherKey]:
    return {publisher.name: publisher.public}


@pytest.fixture
def envelope(publisher: Publisher) -> bytes:
    return seal_record(publisher, KEY, b"StorePath: /nix/store/x\n", sample_manifest(4))


def test_record_round_trip(publisher: Publisher, keys: dict[str, PublisherKey],
                           envelope: bytes) -> None:
    assert envelope.startswith(RECORD_MAGIC)
    rec = open_record(keys, KEY, envelope)
    assert rec.key == KEY
    assert rec.publisher == publisher.public
    assert rec.metadata == b"StorePath: /nix/store/x\n"
    assert rec.manifest == sample_manifest(4)
    assert open_record(keys, KEY, memoryview(envelope)) == rec


def test_record_with_empty_metadata_and_manifest(publisher: Publisher,
                                                 keys: dict[str, PublisherKey]) -> None:
    data = seal_record(publisher, KEY, b"", sample_manifest(0))
    rec = open_record(keys, KEY, data)
    assert rec.metadata == b""
    assert rec.manifest.chunks == ()


def test_record_unknown_key(envelope: bytes) -> None:
    stranger = Publisher("stranger-1", SigningKey(bytes([4]) * 32))
    with pytest.raises(RecordError, match=f"record {KEY} is signed by untrusted key 'rec-pub-1'"):
        open_record({stranger.name: stranger.public}, KEY, envelope)


def test_record_same_name_other_key(envelope: bytes) -> None:
    impostor = Publisher("rec-pub-1", SigningKey(bytes([5]) * 32))
    with pytest.raises(RecordError, match="bad signature by key 'rec-pub-1'"):
        open_record({impostor.name: impostor.public}, KEY, envelope)


@pytest.mark.parametrize("where", ["metadata", "manifest", "last"])
def test_record_tampered_payload_byte(keys: dict[str, PublisherKey], envelope: bytes,
                                      where: str) -> None:
    header = len(RECORD_MAGIC) + 2 + len("rec-pub-1") + 64
    pos = {"metadata": header + 8 + 6, "manifest": header + 8 + 4 + 24 + 10,
           "last": len(envelope) - 1}[where]
    data = bytearray(envelope)
    data[pos] ^= 0x40
    with pytest.raises(RecordError, match=f"record {KEY}: bad signature by key 'rec-pub-1'"):
        open_record(keys, KEY, bytes(data))


def test_record_tampered_signature(keys: dict[str, PublisherKey], envelope: bytes) -> None:
    data = bytearray(envelope)
    data[len(RECORD_MAGIC) + 2 + len("rec-pub-1") + 3] ^= 0x01
    with pytest.raises(RecordError, match="bad signature"):
        open_record(keys, KEY, bytes(data))


def test_record_opened_under_another_key(keys: dict[str, PublisherKey], envelope: bytes) -> None:
    with pytest.raises(RecordError, match=f"record {OTHER_KEY}: bad signature"):
        open_record(keys, OTHER_KEY, envelope)


@pytest.mark.parametrize("keep_after_magic", [0, 1, 2, 2 + 9, 2 + 9 + 63, 2 + 9 + 64 + 3])
def test_record_truncated_header(keys: dict[str, PublisherKey], envelope: bytes,
                                 keep_after_magic: int) -> None:
    data = envelope[:len(RECORD_MAGIC) + keep_after_magic]
    with pytest.raises(RecordError, match="record truncated in its header"):
        open_record(keys, KEY, data)


def test_record_truncated_payload(keys: dict[str, PublisherKey], envelope: bytes) -> None:
    with pytest.raises(RecordError, match="bad signature"):
        open_record(keys, KEY, envelope[:-10])


def test_record_bad_magic(keys: dict[str, PublisherKey], envelope: bytes) -> None:
    with pytest.raises(RecordError, match=r"not a nixshard record \(bad magic\)"):
        open_record(keys, KEY, b"nixshard-record-v1\n" + envelope[len(RECORD_MAGIC):])


def test_record_created_is_signed_and_kept(publisher: Publisher,
                                           keys: dict[str, PublisherKey]) -> None:
    data = seal_record(publisher, KEY, b"md", sample_manifest(1), created=1_700_000_123)
    assert open_record(keys, KEY, data).created == 1_700_000_123
    tampered = bytearray(data)
    tampered[len(RECORD_MAGIC) + 2 + len(publisher.name) + 64 + 7] ^= 0x01
    with pytest.raises(RecordError, match="bad signature"):
        open_record(keys, KEY, bytes(tampered))


def test_record_empty(keys: dict[str, PublisherKey]) -> None:
    with pytest.raises(RecordError, match="bad magic"):
        open_record(keys, KEY, b"")


def signed_envelope(publisher: Publisher, payload: bytes) -> bytes:
    """A record envelope of ``KEY`` around ``payload``, validly signed by ``publisher``."""
    message = RECORD_MAGIC + KEY.encode() + b"\n" + payload
    name = publisher.name.encode()
    return (RECORD_MAGIC + struct.pack(">H", len(name)) + name + publisher.sign(message)
            + payload)


def test_record_signed_with_overrunning_metadata(publisher: Publisher,
                                                 keys: dict[str, PublisherKey]) -> None:
    """A validly signed payload whose metadata length runs past its end."""
    data = signed_envelope(publisher, struct.pack(">QBI", 1, 0, 1000) + b"short")
    with pytest.raises(RecordError, match="metadata length 1000 overruns the record"):
        open_record(keys, KEY, data)


def test_record_signed_with_bad_manifest(publisher: Publisher,
                                         keys: dict[str, PublisherKey]) -> None:
    data = signed_envelope(publisher, struct.pack(">QBI", 1, 0, 2) + b"md" + b"NXSM\x09\x00")
    with pytest.raises(RecordError, match="manifest: unsupported version 9"):
        open_record(keys, KEY, data)

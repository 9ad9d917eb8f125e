"""Cache secrets, keyrings, derivations and the AEAD (storage_network.coding.sealing),
and sealed chunks through the erasure codec (storage_network.coding.codec)."""

from __future__ import annotations

import base64
import hashlib
import os
import random
from dataclasses import replace

import pytest
import zstandard

from storage_network.coding.codec import StripeCodec, open_frame
from storage_network.coding.sealing import (
    NONCE_BYTES,
    SEAL_OVERHEAD,
    TAG_BYTES,
    CacheSecret,
    Keyring,
    seal,
    unseal,
)
from storage_network.errors import CacheSecretError, SealError, StorageNetworkError
from storage_network.wire.manifest import make_manifest
from storage_network.wire.record import RECORD_KEY_RE
from storage_network.wire.stripe import verify_shard

K, M = 4, 2
RAW = bytes(range(32))
RAW_B64 = base64.b64encode(RAW).decode()
SECRET = CacheSecret("seal-test-1", bytes([7]) * 32)
OTHER = CacheSecret("seal-test-2", bytes([8]) * 32)
KEY = bytes([1]) * 32
PLAIN_KEY = "0123456789abcdfghijklmnpqrsvwxyz"


def secret_line(name: str, raw: bytes) -> str:
    return f"{name}:{base64.b64encode(raw).decode()}"


# --- CacheSecret.parse --------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    (RAW_B64, "found no colon"),
    ("", "found no colon"),
    (f"bad name:{RAW_B64}", "a cache secret name of 8 characters: want 1-64 of"),
    (f":{RAW_B64}", "a cache secret name of 0 characters: want 1-64 of"),
    (f"-dash-first:{RAW_B64}", "a cache secret name of 11 characters"),
    (f"{'n' * 65}:{RAW_B64}", "want 1-64 of"),
    ("good-name:not base64!!", "cache secret 'good-name': not base64"),
    (f"good-name:{RAW_B64[:-1]}", "cache secret 'good-name': not base64"),
    (f"good-name:{base64.b64encode(RAW[:31]).decode()}",
     "cache secret 'good-name': 31 bytes, want 32"),
    (f"good-name:{base64.b64encode(RAW + b'x').decode()}",
     "cache secret 'good-name': 33 bytes, want 32"),
    ("good-name:", "cache secret 'good-name': 0 bytes, want 32"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(CacheSecretError) as info:
        CacheSecret.parse(text)
    assert message in str(info.value)
    # never key material, whole or in part
    for material in (RAW_B64, RAW_B64[:20], RAW_B64[-24:], "not base64!!"):
        assert material not in str(info.value)


def test_parse_error_is_a_storage_network_error() -> None:
    with pytest.raises(StorageNetworkError):
        CacheSecret.parse("no-colon")


def test_parse_ignores_surrounding_whitespace() -> None:
    secret = CacheSecret.parse(f"  \t{secret_line('ws-1', RAW)}\n\n")
    assert (secret.name, secret.secret) == ("ws-1", RAW)


def test_text_parse_round_trip() -> None:
    secret = CacheSecret.generate("round.trip_1+x")
    text = secret.text()
    assert text == f"round.trip_1+x:{base64.b64encode(secret.secret).decode()}"
    back = CacheSecret.parse(text)
    assert back == secret
    assert back.secret == secret.secret


def test_repr_holds_no_key_material() -> None:
    secret = CacheSecret.generate("repr-1")
    assert base64.b64encode(secret.secret).decode() not in repr(secret)
    assert secret.secret.hex() not in repr(secret)
    assert repr(secret.secret) not in repr(secret)


def test_generate_gives_distinct_secrets() -> None:
    secrets = [CacheSecret.generate("gen-1") for _ in range(8)]
    assert len({s.secret for s in secrets}) == 8
    assert all(len(s.secret) == 32 for s in secrets)
    assert all(s.name == "gen-1" for s in secrets)


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "ünicode", "-x", "a/b", "a:b"])
def test_generate_refuses_bad_names(name: str) -> None:
    with pytest.raises(CacheSecretError, match="want 1-64 of"):
        CacheSecret.generate(name)


@pytest.mark.parametrize("name", ["a", "A9", "x" * 64, "cache.example.org-1", "a+b_c"])
def test_generate_accepts_good_names(name: str) -> None:
    assert CacheSecret.generate(name).name == name


# --- Keyring ------------------------------------------------------------------------------


def test_keyring_parse_skips_comments_and_blank_lines_and_keeps_order() -> None:
    a, b, c = (CacheSecret.generate(f"ring-{i}") for i in range(3))
    text = (f"# a keyring\n\n{a.text()}\n   \n  # older ones\n{b.text()}\n"
            f"\t{c.text()}  \n")
    ring = Keyring.parse(text)
    assert len(ring) == 3
    assert [s.name for s in ring] == ["ring-0", "ring-1", "ring-2"]
    assert [s.secret for s in ring] == [a.secret, b.secret, c.secret]
    assert ring.current == a
    assert ring[1] == b and ring[-1] == c
    assert ring.text() == f"{a.text()}\n{b.text()}\n{c.text()}\n"
    assert Keyring.parse(ring.text()).text() == ring.text()


def test_keyring_by_id() -> None:
    ring = Keyring([SECRET, OTHER])
    assert ring.by_id(SECRET.secret_id) is SECRET
    assert ring.by_id(OTHER.secret_id) is OTHER
    assert ring.by_id(bytes(8)) is None
    assert len(SECRET.secret_id) == 8
    assert SECRET.secret_id != OTHER.secret_id


def test_keyring_refuses_the_same_secret_twice() -> None:
    with pytest.raises(CacheSecretError, match="the same cache secret twice"):
        Keyring.parse(f"{SECRET.text()}\n{OTHER.text()}\n{SECRET.text()}\n")
    # same bytes under another name are still the same secret
    with pytest.raises(CacheSecretError, match="the same cache secret twice"):
        Keyring([SECRET, CacheSecret("renamed", SECRET.secret)])


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "  \n# x\n  # y"])
def test_keyring_refuses_empty(text: str) -> None:
    with pytest.raises(CacheSecretError, match="at least one cache secret"):
        Keyring.parse(text)


def test_keyring_refuses_empty_sequence() -> None:
    with pytest.raises(CacheSecretError, match="at least one cache secret"):
        Keyring([])


def test_keyring_bad_line_names_its_number() -> None:
    text = f"# comment\n{SECRET.text()}\n\nbroken:{RAW_B64[:10]}\n{OTHER.text()}\n"
    with pytest.raises(CacheSecretError) as info:
        Keyring.parse(text)
    message = str(info.value)
    assert message.startswith("line 4: ")
    assert "cache secret 'broken'" in message
    assert RAW_B64[:10] not in message
    assert SECRET.text().split(":")[1] not in message


def test_keyring_bad_first_line() -> None:
    with pytest.raises(CacheSecretError, match=r"\Aline 1: .*found no colon"):
        Keyring.parse(f"{RAW_B64}\n{SECRET.text()}\n")


# --- derivations --------------------------------------------------------------------------


def test_derivations_are_deterministic() -> None:
    again = CacheSecret.parse(SECRET.text())
    h = hashlib.sha256(b"chunk").digest()
    assert SECRET.chunk(h) == again.chunk(h)
    assert SECRET.chunk(h).key == again.chunk(h).key
    assert SECRET.metadata_key == again.metadata_key
    assert SECRET.secret_id == again.secret_id
    assert SECRET.record_key(PLAIN_KEY) == again.record_key(PLAIN_KEY)


def test_derivations_differ_between_secrets() -> None:
    h = hashlib.sha256(b"chunk").digest()
    assert SECRET.chunk(h).chunk_id != OTHER.chunk(h).chunk_id
    assert SECRET.chunk(h).key != OTHER.chunk(h).key
    assert SECRET.metadata_key != OTHER.metadata_key
    assert SECRET.secret_id != OTHER.secret_id
    assert SECRET.record_key(PLAIN_KEY) != OTHER.record_key(PLAIN_KEY)
    # the name plays no part: only the secret bytes do
    renamed = CacheSecret("renamed", SECRET.secret)
    assert renamed.chunk(h) == SECRET.chunk(h)
    assert renamed.record_key(PLAIN_KEY) == SECRET.record_key(PLAIN_KEY)


def test_derivations_differ_between_purposes_and_inputs() -> None:
    h = hashlib.sha256(b"chunk").digest()
    derived = SECRET.chunk(h)
    outputs = [derived.chunk_id, derived.key, SECRET.metadata_key, h, SECRET.secret]
    assert all(len(o) == 32 for o in outputs)
    assert len(set(outputs)) == len(outputs)
    assert SECRET.secret_id not in (o[:8] for o in outputs)
    other = SECRET.chunk(hashlib.sha256(b"chunk2").digest())
    assert other.chunk_id != derived.chunk_id and other.key != derived.key


def test_record_key_shape() -> None:
    keyed = SECRET.record_key(PLAIN_KEY)
    assert len(keyed) == 32
    assert RECORD_KEY_RE.fullmatch(keyed)
    assert keyed != PLAIN_KEY
    assert SECRET.record_key(PLAIN_KEY[::-1]) != keyed
    for i in range(20):
        other = SECRET.record_key(f"{i:032d}")
        assert RECORD_KEY_RE.fullmatch(other), other


# --- seal / unseal ------------------------------------------------------------------------


def test_seal_round_trip_and_overhead() -> None:
    assert SEAL_OVERHEAD == NONCE_BYTES + TAG_BYTES == 28
    for size in (0, 1, 100, 70_000):
        plain = random.Random(size).randbytes(size)
        sealed = seal(KEY, plain, b"aad")
        assert len(sealed) == size + SEAL_OVERHEAD
        assert unseal(KEY, sealed, b"aad") == plain
        assert unseal(KEY, memoryview(sealed), b"aad") == plain
    assert unseal(KEY, seal(KEY, memoryview(b"view"), b""), b"") == b"view"


def test_seal_is_deterministic() -> None:
    plain = os.urandom(1000)
    assert seal(KEY, plain, b"aad") == seal(KEY, plain, b"aad")
    assert seal(KEY, plain, b"aad") == seal(KEY, bytearray(plain), b"aad")


def test_different_plaintexts_get_different_nonces() -> None:
    nonces = {seal(KEY, bytes([i]) * 64, b"aad")[:NONCE_BYTES] for i in range(32)}
    assert len(nonces) == 32
    # even when they differ in the last byte only
    a = seal(KEY, b"x" * 1000 + b"a", b"aad")
    b = seal(KEY, b"x" * 1000 + b"b", b"aad")
    assert a[:NONCE_BYTES] != b[:NONCE_BYTES]


def test_same_plaintext_with_other_aad_gets_another_nonce() -> None:
    plain = b"the same plaintext"
    a = seal(KEY, plain, b"aad-1")
    b = seal(KEY, plain, b"aad-2")
    assert a[:NONCE_BYTES] != b[:NONCE_BYTES]
    assert a != b
    # the aad length is bound too: moving bytes between aad and plaintext changes the nonce
    c = seal(KEY, b"b" + plain, b"aad")
    d = seal(KEY, plain, b"aadb")
    assert c[:NONCE_BYTES] != d[:NONCE_BYTES]


def test_same_plaintext_under_other_key_gets_another_nonce() -> None:
    plain = b"p" * 100
    assert seal(KEY, plain, b"")[:NONCE_BYTES] != seal(bytes(32), plain, b"")[:NONCE_BYTES]


def test_unseal_wrong_key() -> None:
    sealed = seal(KEY, b"secret bytes", b"aad")
    with pytest.raises(SealError, match="do not open"):
        unseal(bytes([2]) * 32, sealed, b"aad")


def test_unseal_wrong_aad() -> None:
    sealed = seal(KEY, b"secret bytes", b"aad")
    with pytest.raises(SealError, match="do not open"):
        unseal(KEY, sealed, b"aae")
    with pytest.raises(SealError, match="do not open"):
        unseal(KEY, sealed, b"")


@pytest.mark.parametrize("position", [0, NONCE_BYTES - 1, NONCE_BYTES, NONCE_BYTES + 20, -1])
def test_unseal_one_flipped_bit(position: int) -> None:
    sealed = bytearray(seal(KEY, b"secret bytes" * 4, b"aad"))
    sealed[position] ^= 0x10
    with pytest.raises(SealError, match="do not open"):
        unseal(KEY, bytes(sealed), b"aad")


@pytest.mark.parametrize("size", [0, 1, SEAL_OVERHEAD - 1])
def test_unseal_too_short(size: int) -> None:
    with pytest.raises(SealError, match=f"length {size} are shorter than nonce and tag"):
        unseal(KEY, bytes(size), b"aad")


def test_unseal_truncated() -> None:
    sealed = seal(KEY, b"secret bytes", b"aad")
    with pytest.raises(SealError):
        unseal(KEY, sealed[:-1], b"aad")
    with pytest.raises(SealError):
        unseal(KEY, sealed + b"\x00", b"aad")


# --- sealed chunks through the codec ------------------------------------------------------


@pytest.fixture(scope="module")
def codec() -> StripeCodec:
    return StripeCodec(K, M)


def incompressible(seed: int, size: int = 64 * 1024) -> bytes:
    return random.Random(seed).randbytes(size)


def zstd_frame(chunk: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_content_size=True,
                                    write_checksum=False).compress(chunk)


def fragments_of(bodies: tuple[bytes, ...], root: bytes) -> dict[int, bytes]:
    return {i: bytes(verify_shard(root, i, body)) for i, body in enumerate(bodies)}


def test_sealed_encoding_is_deterministic(codec: StripeCodec) -> None:
    chunk = incompressible(1, 20_000) + bytes(20_000)
    a = codec.encode(chunk, SECRET)
    b = codec.encode(chunk, SECRET)
    c = StripeCodec(K, M).encode(chunk, CacheSecret.parse(SECRET.text()))
    assert a.ref == b.ref == c.ref
    assert a.ref.key == b.ref.key == c.ref.key
    assert a.bodies == b.bodies == c.bodies


def test_sealed_chunk_id_and_key(codec: StripeCodec) -> None:
    chunk = incompressible(2, 30_000)
    sealed = codec.encode(chunk, SECRET)
    public = codec.encode(chunk)
    plain_hash = hashlib.sha256(chunk).digest()
    assert public.ref.chunk_id == plain_hash
    assert sealed.ref.chunk_id != plain_hash
    assert sealed.ref.chunk_id == SECRET.chunk(plain_hash).chunk_id
    assert codec.encode(chunk, OTHER).ref.chunk_id not in (sealed.ref.chunk_id, plain_hash)
    assert len(sealed.ref.key) == 32
    assert sealed.ref.key == SECRET.chunk(plain_hash).key
    assert sealed.ref.key != sealed.ref.chunk_id
    assert public.ref.key == b""
    assert sealed.ref.size == public.ref.size == len(chunk)
    assert sealed.ref.root != public.ref.root


def test_sealed_stored_size(codec: StripeCodec) -> None:
    for seed, chunk in enumerate([incompressible(3, 10_000), bytes(50_000), b"x"]):
        enc = codec.encode(chunk, SECRET)
        frame = zstd_frame(chunk)
        assert enc.ref.stored_size == len(frame) + SEAL_OVERHEAD, seed
        assert codec.encode(chunk).ref.stored_size == len(frame), seed


def test_sealed_decode_and_open_frame(codec: StripeCodec) -> None:
    chunk = incompressible(4, 40_000) + bytes(range(256)) * 40
    enc = codec.encode(chunk, SECRET)
    manifest = make_manifest("isa_l_rs_cauchy", K, M, [enc.ref], sealed=True)
    frags = fragments_of(enc.bodies, enc.ref.root)
    for subset in ([0, 1, 2, 3], [2, 3, 4, 5], [0, 2, 4, 5]):
        stored = codec.decode(enc.ref, {i: frags[i] for i in subset})
        assert len(stored) == enc.ref.stored_size
        frame = open_frame(manifest, enc.ref, stored)
        assert frame == zstd_frame(chunk)
        assert len(frame) == manifest.frame_size(enc.ref)
        assert zstandard.ZstdDecompressor().decompress(frame) == chunk


def test_open_frame_without_key(codec: StripeCodec) -> None:
    enc = codec.encode(incompressible(5, 5000), SECRET)
    manifest = make_manifest("isa_l_rs_cauchy", K, M, [enc.ref], sealed=True)
    stored = codec.decode(enc.ref, fragments_of(enc.bodies, enc.ref.root))
    keyless = replace(enc.ref, key=b"")
    with pytest.raises(SealError, match="is sealed and its key is unknown"):
        open_frame(manifest, keyless, stored)


def test_open_frame_with_wrong_key(codec: StripeCodec) -> None:
    chunk = incompressible(6, 5000)
    enc = codec.encode(chunk, SECRET)
    manifest = make_manifest("isa_l_rs_cauchy", K, M, [enc.ref], sealed=True)
    stored = codec.decode(enc.ref, fragments_of(enc.bodies, enc.ref.root))
    other_key = OTHER.chunk(hashlib.sha256(chunk).digest()).key
    with pytest.raises(SealError, match=f"chunk {enc.ref.chunk_id.hex()[:16]}: .*do not open"):
        open_frame(manifest, replace(enc.ref, key=other_key), stored)
    # the key is bound to its chunk id (the aad): the right key under another id fails too
    with pytest.raises(SealError):
        open_frame(manifest, replace(enc.ref, chunk_id=bytes(32)), stored)


def test_open_frame_on_public_manifest_is_identity(codec: StripeCodec) -> None:
    chunk = incompressible(7, 5000)
    enc = codec.encode(chunk)
    manifest = make_manifest("isa_l_rs_cauchy", K, M, [enc.ref])
    stored = codec.decode(enc.ref, fragments_of(enc.bodies, enc.ref.root))
    assert open_frame(manifest, enc.ref, stored) == stored == zstd_frame(chunk)
    junk = b"anything at all"
    assert open_frame(manifest, enc.ref, junk) == junk


WINDOW_OFFSETS = (100, 5_000, 25_000, 40_000, 58_000, 64 * 1024 - 32)


def windows(chunk: bytes) -> list[bytes]:
    return [chunk[o:o + 32] for o in WINDOW_OFFSETS]


def test_plaintext_is_not_in_sealed_shards(codec: StripeCodec) -> None:
    chunk = incompressible(8)
    sealed = codec.encode(chunk, SECRET)
    for i, body in enumerate(sealed.bodies):
        for offset, window in zip(WINDOW_OFFSETS, windows(chunk), strict=True):
            assert window not in body, (i, offset)


def test_plaintext_is_in_public_shards(codec: StripeCodec) -> None:
    """The control of the test above: the same windows are found in a public encoding
    (a systematic code of an incompressible chunk stores it as it is)."""
    chunk = incompressible(8)
    public = codec.encode(chunk)
    data = b"".join(public.bodies)
    for offset, window in zip(WINDOW_OFFSETS, windows(chunk), strict=True):
        assert window in data, offset

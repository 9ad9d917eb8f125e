"""Nix-format ed25519 keys, signing and verification (no nix binary needed)."""

from __future__ import annotations

import base64
from pathlib import Path

import nacl.signing
import pytest

from nix_formats.errors import NixFormatError, NixKeyError, SignatureError
from nix_formats.keys import PublicKey, SecretKey, sign_narinfo, verify_narinfo
from nix_formats.narinfo import NarInfo
from tests.nix_formats.samples import NIX_WRITTEN_NARINFO

# Made by `nix-store --generate-binary-cache-key test1 sk pk` (Nix 2.8.0).
SK = (
    "test1:DX/gJH7xYYpnVtqb/Ha9D7iv2kvwbWtj2uW6V90D9p2vcLUhwwFkzwCHOI8LVu5mqW6FJUbTFKnIPSi3XN8ztg=="
)
PK = "test1:r3C1IcMBZM8AhziPC1buZqluhSVG0xSpyD0ot1zfM7Y="
NARINFO = NIX_WRITTEN_NARINFO
NIX_SIG = NARINFO.split("Sig: ")[1].strip()


def test_parse_nix_keys() -> None:
    sk = SecretKey.parse(SK)
    pk = PublicKey.parse(PK)
    assert sk.name == pk.name == "test1"
    assert sk.public_key() == pk
    assert pk.text() == PK
    assert sk.text() == SK


def test_secret_key_repr_hides_key() -> None:
    assert repr(SecretKey.parse(SK)) == "SecretKey(name='test1')"


def test_whitespace_around_key_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "sk").write_text(SK + "\n")
    (tmp_path / "pk").write_text("  " + PK + "\n")
    assert SecretKey.load(tmp_path / "sk") == SecretKey.parse(SK)
    assert PublicKey.load(tmp_path / "pk") == PublicKey.parse(PK)


def test_sign_matches_nix() -> None:
    info = NarInfo.parse(NARINFO)
    assert SecretKey.parse(SK).sign(info.fingerprint()) == NIX_SIG


def test_verify_nix_signature() -> None:
    info = NarInfo.parse(NARINFO)
    pk = PublicKey.parse(PK)
    assert pk.verify(info.fingerprint(), NIX_SIG)
    assert verify_narinfo(info, [pk])


def test_verify_rejects_changes() -> None:
    pk = PublicKey.parse(PK)
    info = NarInfo.parse(NARINFO)
    assert not pk.verify(info.fingerprint() + "x", NIX_SIG)
    info.nar_size += 1
    assert not verify_narinfo(info, [pk])
    info = NarInfo.parse(NARINFO)
    info.references = []
    assert not verify_narinfo(info, [pk])
    # URL, compression and file hash are not signed.
    info = NarInfo.parse(NARINFO)
    info.url = "nar/other.nar.zst"
    info.compression = "zstd"
    assert verify_narinfo(info, [pk])


def test_verify_needs_a_trusted_key() -> None:
    info = NarInfo.parse(NARINFO)
    other = SecretKey.generate("other")
    assert not verify_narinfo(info, [])
    assert not verify_narinfo(info, [other.public_key()])
    # Same name, different key: not valid.
    impostor = SecretKey.generate("test1")
    assert not verify_narinfo(info, [impostor.public_key()])
    assert verify_narinfo(info, [impostor.public_key(), PublicKey.parse(PK)])
    assert not PublicKey.parse(PK).verify(info.fingerprint(), impostor.sign(info.fingerprint()))


def test_verify_with_another_name_is_false() -> None:
    pk = PublicKey.parse(PK)
    assert not pk.verify("x", "other:" + NIX_SIG.split(":", 1)[1])


def test_verify_ignores_malformed_sigs_in_narinfo() -> None:
    info = NarInfo.parse(NARINFO)
    info.sigs.insert(0, "test1:garbage")
    assert verify_narinfo(info, [PublicKey.parse(PK)])


def test_verify_malformed_signature_raises() -> None:
    pk = PublicKey.parse(PK)
    with pytest.raises(SignatureError, match="is not of the form <keyname>:<base64>"):
        pk.verify("x", "nocolon")
    with pytest.raises(SignatureError, match="not the base64 of a 64-byte ed25519 signature"):
        pk.verify("x", "test1:AAAA")


def test_sign_narinfo_appends_once() -> None:
    info = NarInfo.parse(NARINFO)
    info.sigs.clear()
    sk = SecretKey.parse(SK)
    assert sign_narinfo(info, sk) == NIX_SIG
    assert sign_narinfo(info, sk) == NIX_SIG
    assert info.sigs == [NIX_SIG]
    other = SecretKey.generate("other-1")
    sign_narinfo(info, other)
    assert len(info.sigs) == 2
    assert verify_narinfo(info, [other.public_key()])
    assert info.render() == NARINFO + f"Sig: {info.sigs[1]}\n"


def test_generate_round_trip() -> None:
    sk = SecretKey.generate("cache.example.org-1")
    assert SecretKey.parse(sk.text()) == sk
    assert PublicKey.parse(sk.public_key().text()) == sk.public_key()
    sig = sk.sign("hello")
    assert sig.startswith("cache.example.org-1:") and len(sig.split(":")[1]) == 88
    assert sk.public_key().verify("hello", sig)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "secret key is not of the form <name>:<base64> \\(no ':'\\)"),
        ("nocolon", "secret key is not of the form"),
        (":" + b64(bytes(64)), "secret key has an empty name"),
        ("name:", "secret key 'name' has no key data after ':'"),
        ("name:!!!!", "secret key 'name': key data is not valid base64"),
        ("name:" + b64(bytes(32)), "secret key 'name' is 32 bytes, expected 64 \\(is it a public"),
        (
            "name:" + b64(bytes(64)),
            "secret key 'name' is corrupt: its public half does not match its seed",
        ),
        ("a:b:" + b64(bytes(64)), "secret key 'a': key data is not valid base64"),
    ],
)
def test_bad_secret_keys(text: str, message: str) -> None:
    with pytest.raises(NixKeyError, match=message) as info:
        SecretKey.parse(text)
    assert isinstance(info.value, NixFormatError)


def test_secret_key_errors_do_not_leak_key_material() -> None:
    seed = SK.split(":")[1]
    broken = "test1:" + b64(base64.b64decode(seed)[:32] + bytes(32))
    with pytest.raises(NixKeyError) as info:
        SecretKey.parse(broken)
    assert broken.split(":")[1][:20] not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nocolon", "public key is not of the form"),
        (":" + b64(bytes(32)), "public key has an empty name"),
        ("name:%%%", "public key 'name': key data is not valid base64"),
        ("name:" + b64(bytes(64)), "public key 'name' is 64 bytes, expected 32 \\(is it a secret"),
    ],
)
def test_bad_public_keys(text: str, message: str) -> None:
    with pytest.raises(NixKeyError, match=message):
        PublicKey.parse(text)


def test_key_names_are_validated() -> None:
    with pytest.raises(NixKeyError, match="key name 'a:b' must be non-empty and contain no ':'"):
        SecretKey("a:b", nacl.signing.SigningKey.generate())
    with pytest.raises(NixKeyError, match="key name '' must be non-empty"):
        PublicKey("", nacl.signing.SigningKey.generate().verify_key)

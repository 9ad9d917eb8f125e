"""The publisher's signing key from a file or the environment, and the check that the
network file lists it (no network needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nix_formats.keys import SecretKey
from nix_records import (
    SIGNING_KEY_ENV,
    PublishingKey,
    SecretError,
    SigningKeyError,
    UnlistedPublisherError,
    check_publisher,
    load_signing_key,
    read_secret,
)
from storage_network import PublisherKey
from storage_network.config import init_network

KEY = SecretKey.generate("signing-test-1")
URLS = [f"http://127.0.0.1:{9200 + i}" for i in range(6)]


def key_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "secret.key"
    path.write_text(text)
    return path


def test_one_key_signs_both_ways() -> None:
    key = PublishingKey.parse(f"  {KEY.text()}\n")
    assert key.nix_key.text() == KEY.text()
    assert key.publisher.name == KEY.name
    assert bytes(key.publisher.signing_key) == bytes(KEY.signing_key)
    assert KEY.text() not in repr(key)


def test_the_file_wins_over_the_environment(tmp_path: Path) -> None:
    other = SecretKey.generate("signing-test-2")
    path = key_file(tmp_path, KEY.text() + "\n")
    assert load_signing_key(path, {SIGNING_KEY_ENV: other.text()}).nix_key.name == KEY.name
    assert load_signing_key(str(path), {}).publisher.name == KEY.name
    assert load_signing_key(None, {SIGNING_KEY_ENV: other.text()}).nix_key.name == other.name


def test_no_key_is_an_error() -> None:
    with pytest.raises(SigningKeyError, match=f"give a key file or set \\${SIGNING_KEY_ENV}"):
        load_signing_key(None, {SIGNING_KEY_ENV: "  "})


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(SigningKeyError, match=f"cannot read signing key {missing}: No such"):
        load_signing_key(missing, {})


@pytest.mark.parametrize("text", ["no-colon", "name:!!!", f"{KEY.name}:" + "A" * 44,
                                  KEY.public_key().text()])
def test_a_malformed_key_is_refused_without_key_material(tmp_path: Path, text: str) -> None:
    with pytest.raises(SigningKeyError, match="signing key .*secret.key: ") as info:
        load_signing_key(key_file(tmp_path, text), {})
    assert KEY.text().split(":")[1] not in str(info.value)
    with pytest.raises(SigningKeyError, match=f"signing key \\${SIGNING_KEY_ENV}: "):
        load_signing_key(None, {SIGNING_KEY_ENV: text})


def test_read_secret(tmp_path: Path) -> None:
    path = key_file(tmp_path, "  user:pw \n")
    assert read_secret(path, {"X": "env"}, "X", "credentials") == "user:pw"
    assert read_secret(None, {"X": " env\n"}, "X", "credentials") == "env"
    assert read_secret(None, {}, "X", "credentials") is None
    with pytest.raises(SecretError, match=f"cannot read credentials {tmp_path}"):
        read_secret(tmp_path, {}, "X", "credentials")


def test_the_network_file_must_list_the_key() -> None:
    key = PublishingKey.parse(KEY.text())
    listed = PublisherKey(KEY.name, KEY.signing_key.verify_key)
    check_publisher(init_network(URLS, 4, 2, publishers=[listed]), key.publisher)
    impostor = PublisherKey(KEY.name, SecretKey.generate(KEY.name).signing_key.verify_key)
    unlisted = re.escape(f"does not list publisher key {KEY.public_key().text()}")
    for publishers in ([], [impostor]):
        with pytest.raises(UnlistedPublisherError, match=unlisted):
            check_publisher(init_network(URLS, 4, 2, publishers=publishers), key.publisher)


def test_loading_for_a_network_checks_the_key(tmp_path: Path) -> None:
    path = key_file(tmp_path, KEY.text())
    listed = init_network(URLS, 4, 2,
                          publishers=[PublisherKey(KEY.name, KEY.signing_key.verify_key)])
    assert load_signing_key(path, {}, network=listed).nix_key.name == KEY.name
    with pytest.raises(UnlistedPublisherError):
        load_signing_key(path, {}, network=init_network(URLS, 4, 2))

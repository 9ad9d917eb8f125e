"""A private cache's keyring from a file or the environment, checked against the network
file (nix_records.cache_secret; no network needed)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from nix_records import (
    CACHE_SECRET_ENV,
    CacheSecretConfigError,
    SecretError,
    load_keyring,
)
from storage_network import CacheSecret, Keyring
from storage_network.config import init_network

URLS = [f"http://127.0.0.1:{9001 + i}" for i in range(6)]
PRIVATE = init_network(URLS, 4, 2, private=True)
PUBLIC = init_network(URLS, 4, 2)
A = CacheSecret("cache-test-1", bytes(range(32)))
B = CacheSecret("cache-test-2", bytes(range(100, 132)))


def b64(secret: CacheSecret) -> str:
    return base64.b64encode(secret.secret).decode()


def secret_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cache.secret"
    path.write_text(text)
    return path


def test_networks_under_test() -> None:
    assert CACHE_SECRET_ENV == "NIXSHARD_CACHE_SECRET"
    assert PRIVATE.private and not PUBLIC.private


@pytest.mark.parametrize("env", [{}, {CACHE_SECRET_ENV: ""}, {CACHE_SECRET_ENV: "  \n"}])
def test_private_network_without_a_secret(env: dict[str, str]) -> None:
    with pytest.raises(CacheSecretConfigError) as info:
        load_keyring(None, env, PRIVATE)
    message = str(info.value)
    assert "--cache-secret" in message
    assert "NIXSHARD_CACHE_SECRET" in message
    assert "private" in message


def test_public_network_with_a_secret_file(tmp_path: Path) -> None:
    path = secret_file(tmp_path, A.text() + "\n")
    with pytest.raises(CacheSecretConfigError) as info:
        load_keyring(path, {}, PUBLIC)
    message = str(info.value)
    assert str(path) in message and "private = true" in message
    assert b64(A) not in message


def test_public_network_with_a_secret_in_the_environment() -> None:
    with pytest.raises(CacheSecretConfigError) as info:
        load_keyring(None, {CACHE_SECRET_ENV: A.text()}, PUBLIC)
    assert f"${CACHE_SECRET_ENV}" in str(info.value)
    assert b64(A) not in str(info.value)


def test_public_network_without_a_secret() -> None:
    assert load_keyring(None, {}, PUBLIC) is None
    assert load_keyring(None, {CACHE_SECRET_ENV: " "}, PUBLIC) is None
    assert load_keyring(None, {"OTHER": A.text()}, PUBLIC) is None


def test_from_a_file(tmp_path: Path) -> None:
    path = secret_file(tmp_path, f"# rotated\n{B.text()}\n\n{A.text()}\n")
    for given in (path, str(path)):
        ring = load_keyring(given, {}, PRIVATE)
        assert isinstance(ring, Keyring)
        assert [s.name for s in ring] == ["cache-test-2", "cache-test-1"]
        assert ring.current.secret == B.secret


def test_the_file_wins_over_the_environment(tmp_path: Path) -> None:
    path = secret_file(tmp_path, A.text())
    ring = load_keyring(path, {CACHE_SECRET_ENV: B.text()}, PRIVATE)
    assert ring is not None and [s.secret for s in ring] == [A.secret]


def test_from_the_environment() -> None:
    ring = load_keyring(None, {CACHE_SECRET_ENV: f"\n{A.text()}\n{B.text()}\n"}, PRIVATE)
    assert ring is not None
    assert [s.secret for s in ring] == [A.secret, B.secret]
    assert ring.current.name == "cache-test-1"


@pytest.mark.parametrize(("text", "why"), [
    ("# nothing but a comment\n", "at least one cache secret"),
    ("cache-test-1\n", "line 1: a cache secret is `name:base64`, found no colon"),
    (f"{A.text()}\nbroken:{b64(B)[:-4]}\n", "line 2: cache secret 'broken': 30 bytes, want 32"),
    (f"{A.text()}\n{A.text()}\n", "the same cache secret twice"),
], ids=["empty", "no-colon", "short", "duplicate"])
def test_a_malformed_file_is_named(tmp_path: Path, text: str, why: str) -> None:
    path = secret_file(tmp_path, text)
    with pytest.raises(CacheSecretConfigError) as info:
        load_keyring(path, {}, PRIVATE)
    message = str(info.value)
    assert message.startswith(f"cache secret {path}: ")
    assert why in message
    for material in (b64(A), b64(B), b64(B)[:-4], b64(A)[:16], b64(B)[:16]):
        assert material not in message


def test_a_malformed_environment_is_named() -> None:
    with pytest.raises(CacheSecretConfigError) as info:
        load_keyring(None, {CACHE_SECRET_ENV: f"{A.text()}\nx y:{b64(B)}"}, PRIVATE)
    message = str(info.value)
    assert message.startswith(f"cache secret ${CACHE_SECRET_ENV}: line 2: ")
    assert b64(A) not in message and b64(B) not in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.secret"
    with pytest.raises(SecretError, match=f"cannot read cache secret {missing}: No such"):
        load_keyring(missing, {CACHE_SECRET_ENV: A.text()}, PRIVATE)


def test_a_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match=f"cannot read cache secret {tmp_path}"):
        load_keyring(tmp_path, {}, PRIVATE)

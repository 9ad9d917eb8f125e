"""Publisher keys and signed write requests (storage_network.auth)."""

from __future__ import annotations

import base64

import pytest
from nacl.signing import SigningKey

from storage_network.auth import (
    AUTH_SCHEME,
    DATE_HEADER,
    MAX_SKEW_SECONDS,
    Publisher,
    PublisherKey,
    parse_publisher_key,
    parse_publisher_secret,
    sha256,
    sign_write,
    verify_write,
)
from storage_network.errors import AuthError

NOW = 1_700_000_000.0
PATH = "/shards/" + "ab" * 32 + ".3"
BODY = b"shard body bytes"


def make_publisher(name: str = "pub-1", seed: int = 1) -> Publisher:
    return Publisher(name, SigningKey(bytes([seed]) * 32))


def secret_text(name: str, signing_key: SigningKey) -> str:
    raw = bytes(signing_key) + bytes(signing_key.verify_key)
    return f"{name}:{base64.b64encode(raw).decode()}"


@pytest.fixture
def publisher() -> Publisher:
    return make_publisher()


@pytest.fixture
def keys(publisher: Publisher) -> dict[str, PublisherKey]:
    return {publisher.name: publisher.public}


@pytest.fixture
def headers(publisher: Publisher) -> dict[str, str]:
    return sign_write(publisher, "PUT", PATH, sha256(BODY), now=NOW)


def verify(keys: dict[str, PublisherKey], headers: dict[str, str], *, method: str = "PUT",
           path: str = PATH, body: bytes = BODY, now: float = NOW) -> PublisherKey:
    return verify_write(keys, method, path, headers.get("Authorization"),
                        headers.get(DATE_HEADER), sha256(body), now=now)


# --- round trip ---------------------------------------------------------------------------


def test_sign_verify_round_trip(publisher: Publisher, keys: dict[str, PublisherKey],
                                headers: dict[str, str]) -> None:
    assert headers[DATE_HEADER] == str(int(NOW))
    assert headers["Authorization"].startswith(f"{AUTH_SCHEME} {publisher.name}:")
    key = verify(keys, headers)
    assert key == publisher.public
    # the date may drift up to max_skew either way
    assert verify(keys, headers, now=NOW + MAX_SKEW_SECONDS) == publisher.public
    assert verify(keys, headers, now=NOW - MAX_SKEW_SECONDS) == publisher.public


def test_verify_picks_the_signing_key_among_several(publisher: Publisher) -> None:
    other = make_publisher("pub-2", seed=2)
    keys = {publisher.name: publisher.public, other.name: other.public}
    headers = sign_write(other, "PUT", PATH, sha256(BODY), now=NOW)
    assert verify(keys, headers) == other.public


def test_method_is_case_insensitive(keys: dict[str, PublisherKey],
                                    headers: dict[str, str]) -> None:
    assert verify(keys, headers, method="put").name == "pub-1"


def test_key_text_round_trip(publisher: Publisher) -> None:
    text = publisher.public.text()
    assert text.startswith("pub-1:")
    assert parse_publisher_key(text) == publisher.public
    secret = parse_publisher_secret(secret_text("pub-1", publisher.signing_key))
    assert secret.public == publisher.public
    assert secret.sign(b"m") == publisher.sign(b"m")


# --- bad write requests ------------------------------------------------------------------


def test_missing_authorization_header(keys: dict[str, PublisherKey],
                                      headers: dict[str, str]) -> None:
    del headers["Authorization"]
    with pytest.raises(AuthError, match="without publisher signature"):
        verify(keys, headers)


def test_missing_date_header(keys: dict[str, PublisherKey], headers: dict[str, str]) -> None:
    del headers[DATE_HEADER]
    with pytest.raises(AuthError, match=f"Authorization and {DATE_HEADER} headers required"):
        verify(keys, headers)


def test_wrong_scheme(keys: dict[str, PublisherKey], headers: dict[str, str]) -> None:
    headers["Authorization"] = headers["Authorization"].replace(AUTH_SCHEME, "Bearer")
    with pytest.raises(AuthError, match="unsupported authorization scheme 'Bearer'"):
        verify(keys, headers)


def test_credential_without_colon(keys: dict[str, PublisherKey],
                                  headers: dict[str, str]) -> None:
    headers["Authorization"] = f"{AUTH_SCHEME} pub-1"
    with pytest.raises(AuthError, match="not name:base64-signature"):
        verify(keys, headers)


def test_date_not_an_integer(keys: dict[str, PublisherKey], headers: dict[str, str]) -> None:
    headers[DATE_HEADER] = "yesterday"
    with pytest.raises(AuthError, match="'yesterday' is not an integer"):
        verify(keys, headers)


def test_unknown_key_name(publisher: Publisher, headers: dict[str, str]) -> None:
    other = make_publisher("pub-2", seed=2)
    with pytest.raises(AuthError, match="publisher key 'pub-1' is not accepted here"):
        verify({other.name: other.public}, headers)


def test_same_name_other_key(headers: dict[str, str]) -> None:
    impostor = make_publisher("pub-1", seed=9)
    with pytest.raises(AuthError, match="bad signature by publisher key 'pub-1'"):
        verify({impostor.name: impostor.public}, headers)


def test_bad_base64_signature(keys: dict[str, PublisherKey], headers: dict[str, str]) -> None:
    headers["Authorization"] = f"{AUTH_SCHEME} pub-1:not*base64!"
    with pytest.raises(AuthError, match="bad signature by publisher key 'pub-1'"):
        verify(keys, headers)


def test_signature_of_wrong_length(keys: dict[str, PublisherKey],
                                   headers: dict[str, str]) -> None:
    short = base64.b64encode(b"x" * 10).decode()
    headers["Authorization"] = f"{AUTH_SCHEME} pub-1:{short}"
    with pytest.raises(AuthError, match="bad signature by publisher key 'pub-1'"):
        verify(keys, headers)


def test_signature_over_another_body(keys: dict[str, PublisherKey],
                                     headers: dict[str, str]) -> None:
    with pytest.raises(AuthError, match="bad signature by publisher key 'pub-1'"):
        verify(keys, headers, body=BODY + b"!")


def test_signature_over_another_path(keys: dict[str, PublisherKey],
                                     headers: dict[str, str]) -> None:
    with pytest.raises(AuthError, match="bad signature by publisher key 'pub-1'"):
        verify(keys, headers, path=PATH[:-1] + "4")


def test_signature_over_another_method(keys: dict[str, PublisherKey],
                                       headers: dict[str, str]) -> None:
    with pytest.raises(AuthError, match="bad signature by publisher key 'pub-1'"):
        verify(keys, headers, method="DELETE")


def test_date_header_altered_after_signing(keys: dict[str, PublisherKey],
                                           headers: dict[str, str]) -> None:
    headers[DATE_HEADER] = str(int(NOW) + 1)
    with pytest.raises(AuthError, match="bad signature by publisher key 'pub-1'"):
        verify(keys, headers)


def test_stale_date(keys: dict[str, PublisherKey], headers: dict[str, str]) -> None:
    with pytest.raises(AuthError, match=rf"is 301 s away from now \(max {MAX_SKEW_SECONDS}\)"):
        verify(keys, headers, now=NOW + MAX_SKEW_SECONDS + 1)


def test_date_from_the_future(keys: dict[str, PublisherKey], headers: dict[str, str]) -> None:
    with pytest.raises(AuthError, match=r"is -1000 s away from now"):
        verify(keys, headers, now=NOW - 1000)


# --- key text -----------------------------------------------------------------------------


def test_public_key_wrong_length(publisher: Publisher) -> None:
    text = "pub-1:" + base64.b64encode(bytes(publisher.public.verify_key)[:31]).decode()
    with pytest.raises(AuthError, match="key 'pub-1': 31 bytes, expected 32"):
        parse_publisher_key(text)


def test_public_key_given_a_secret_key(publisher: Publisher) -> None:
    with pytest.raises(AuthError, match="key 'pub-1': 64 bytes, expected 32"):
        parse_publisher_key(secret_text("pub-1", publisher.signing_key))


def test_public_key_without_colon() -> None:
    with pytest.raises(AuthError, match="is not of the form name:base64"):
        parse_publisher_key(base64.b64encode(bytes(32)).decode())


def test_public_key_without_name() -> None:
    with pytest.raises(AuthError, match="is not of the form name:base64"):
        parse_publisher_key(":" + base64.b64encode(bytes(32)).decode())


def test_public_key_bad_base64() -> None:
    with pytest.raises(AuthError, match="key 'pub-1': invalid base64"):
        parse_publisher_key("pub-1:@@@@")


def test_secret_key_wrong_length(publisher: Publisher) -> None:
    with pytest.raises(AuthError, match="key 'pub-1': 32 bytes, expected 64"):
        parse_publisher_secret(publisher.public.text())


def test_secret_key_without_colon(publisher: Publisher) -> None:
    text = secret_text("pub-1", publisher.signing_key).split(":", 1)[1]
    with pytest.raises(AuthError, match="is not of the form name:base64"):
        parse_publisher_secret(text)


def test_secret_key_mismatched_public_half(publisher: Publisher) -> None:
    other = SigningKey(bytes([7]) * 32)
    raw = bytes(publisher.signing_key) + bytes(other.verify_key)
    text = f"pub-1:{base64.b64encode(raw).decode()}"
    with pytest.raises(AuthError, match="secret key 'pub-1': public half does not match"):
        parse_publisher_secret(text)

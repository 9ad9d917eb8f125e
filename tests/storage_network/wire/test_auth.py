"""Publisher keys and signed write requests (storage_network.wire.write_auth)."""

from __future__ import annotations

import base64

import pytest
from nacl.signing import SigningKey

from storage_network.errors import AuthError, MissingSignatureError
from storage_network.wire.write_auth import (
    AUTH_SCHEME,
    DATE_HEADER,
    MAX_SKEW_SECONDS,
    NODE_HEADER,
    NONCE_HEADER,
    Publisher,
    PublisherKey,
    parse_publisher_key,
    parse_publisher_secret,
    parse_write_claim,
    sha256,
    sign_write,
    verify_write,
)

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


NODE = "node-7"


@pytest.fixture
def headers(publisher: Publisher) -> dict[str, str]:
    return sign_write(publisher, NODE, "PUT", PATH, sha256(BODY), now=NOW)


def verify(keys: dict[str, PublisherKey], headers: dict[str, str], *, method: str = "PUT",
           path: str = PATH, body: bytes = BODY, now: float = NOW) -> PublisherKey:
    return verify_write(keys, NODE, method, path, headers, sha256(body), now=now).key


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
    headers = sign_write(other, NODE, "PUT", PATH, sha256(BODY), now=NOW)
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
    with pytest.raises(MissingSignatureError, match=f"missing {DATE_HEADER} header"):
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
    with pytest.raises(AuthError, match="signature by publisher key 'pub-1' is not base64"):
        verify(keys, headers)


def test_signature_of_wrong_length(keys: dict[str, PublisherKey],
                                   headers: dict[str, str]) -> None:
    short = base64.b64encode(b"x" * 10).decode()
    headers["Authorization"] = f"{AUTH_SCHEME} pub-1:{short}"
    with pytest.raises(AuthError, match="has 10 bytes, not 64"):
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


# --- binding to one node, nonces -----------------------------------------------------------


def test_write_for_another_node_is_refused(keys: dict[str, PublisherKey],
                                           headers: dict[str, str]) -> None:
    with pytest.raises(AuthError, match="signed for node 'node-7', this is node 'node-8'"):
        verify_write(keys, "node-8", "PUT", PATH, headers, sha256(BODY), now=NOW)


def test_node_header_cannot_be_rewritten(keys: dict[str, PublisherKey],
                                         headers: dict[str, str]) -> None:
    """The node id is signed: rewriting the header to the victim's id breaks the signature."""
    headers[NODE_HEADER] = "node-8"
    with pytest.raises(AuthError, match="bad signature"):
        verify_write(keys, "node-8", "PUT", PATH, headers, sha256(BODY), now=NOW)


def test_nonce_is_signed_and_fresh(publisher: Publisher, keys: dict[str, PublisherKey],
                                   headers: dict[str, str]) -> None:
    again = sign_write(publisher, NODE, "PUT", PATH, sha256(BODY), now=NOW)
    assert again[NONCE_HEADER] != headers[NONCE_HEADER]
    headers[NONCE_HEADER] = again[NONCE_HEADER]
    with pytest.raises(AuthError, match="bad signature"):
        verify(keys, headers)


@pytest.mark.parametrize("nonce", ["", "xyz", "A" * 32, "0" * 31, "0" * 33])
def test_malformed_nonce(keys: dict[str, PublisherKey], headers: dict[str, str],
                         nonce: str) -> None:
    headers[NONCE_HEADER] = nonce
    with pytest.raises(AuthError, match="must be 32 lowercase hex digits"):
        verify(keys, headers)


def test_claim_is_checked_without_the_body(keys: dict[str, PublisherKey],
                                           headers: dict[str, str]) -> None:
    claim = parse_write_claim(keys, NODE, headers, now=NOW)
    assert (claim.node_id, claim.date, claim.nonce) == (NODE, int(NOW), headers[NONCE_HEADER])
    with pytest.raises(AuthError, match="bad signature"):
        claim.verify("PUT", PATH, sha256(BODY + b"!"))

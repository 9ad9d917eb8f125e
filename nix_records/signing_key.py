"""The publisher's signing key: one Nix secret key, from a file or the environment.

The same ed25519 key signs the Nix ``Sig:`` of each narinfo and the network
records and node writes.  Its file is what ``nix-store
--generate-binary-cache-key`` writes: one line ``name:base64(64 bytes: seed
+ public key)`` (Nix ``src/libutil/crypto.cc``).  Secrets never sit inline
in a config file: the commands take a file path, or the key text itself in
the environment variable :data:`SIGNING_KEY_ENV`.  A key is only of use
when the network file lists its public half under ``publishers``
(:func:`check_publisher`): nodes refuse writes, and readers records, by
any other key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nix_formats.errors import NixFormatError
from nix_formats.keys import SecretKey
from storage_network import Network, Publisher

from .errors import SecretError, SigningKeyError, UnlistedPublisherError

__all__ = [
    "SIGNING_KEY_ENV",
    "PublishingKey",
    "check_publisher",
    "load_signing_key",
    "read_secret",
]

#: The environment variable holding the signing key's text when no key file is given.
SIGNING_KEY_ENV = "NIXSHARD_SIGNING_KEY"


@dataclass(frozen=True)
class PublishingKey:
    """One secret key seen two ways.

    Attributes:
        nix_key: signs narinfo ``Sig:`` lines (:func:`nix_formats.keys.sign_narinfo`).
        publisher: signs network records and node writes; the same name and
            ed25519 key.
    """

    nix_key: SecretKey = field(repr=False)
    publisher: Publisher = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> PublishingKey:
        """Parse the key text ``name:base64(64 bytes)`` (surrounding whitespace ignored).

        Raises:
            SigningKeyError: malformed text, not 64 bytes, or a public half
                that does not match the seed (messages hold no key material).
        """
        try:
            key = SecretKey.parse(text)
        except NixFormatError as exc:
            raise SigningKeyError(str(exc)) from exc
        return cls(key, Publisher(key.name, key.signing_key))


def read_secret(path: str | Path | None, env: Mapping[str, str], env_name: str,
                what: str) -> str | None:
    """The stripped text of the secret file ``path``, else of ``env[env_name]``, else None.

    Args:
        path: the secret's file, or None to read the environment.
        env: the environment (``os.environ``).
        env_name: the variable read when ``path`` is None.
        what: what the secret is, for the error message (``"signing key"``).

    Raises:
        SecretError: the file cannot be read (the message names it).
    """
    if path is not None:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise SecretError(f"cannot read {what} {path}: {exc.strerror}") from exc
    text = env.get(env_name, "").strip()
    return text or None


def load_signing_key(path: str | Path | None, env: Mapping[str, str], *,
                     network: Network | None = None) -> PublishingKey:
    """The signing key in file ``path``, else in ``env[SIGNING_KEY_ENV]``.

    Args:
        path: the key file, or None to read the key text from the environment.
        env: the environment (``os.environ``).
        network: when given, the key must be one its ``publishers`` list
            (:func:`check_publisher`).

    Raises:
        SigningKeyError: no key given, unreadable file, or malformed key (the
            message names the file or the variable).
        UnlistedPublisherError: ``network`` does not list the key.
    """
    source = str(path) if path is not None else f"${SIGNING_KEY_ENV}"
    try:
        text = read_secret(path, env, SIGNING_KEY_ENV, "signing key")
    except SecretError as exc:
        raise SigningKeyError(str(exc)) from exc
    if text is None:
        raise SigningKeyError(f"no signing key: give a key file or set ${SIGNING_KEY_ENV}")
    try:
        key = PublishingKey.parse(text)
    except SigningKeyError as exc:
        raise SigningKeyError(f"signing key {source}: {exc}") from exc
    if network is not None:
        check_publisher(network, key.publisher)
    return key


def check_publisher(network: Network, publisher: Publisher) -> None:
    """Refuse a publisher whose public key the network file does not list.

    Raises:
        UnlistedPublisherError: no key of that name under ``publishers``, or
            one of that name with another public half.
    """
    known = network.publishers.get(publisher.name)
    if known is None or bytes(known.verify_key) != bytes(publisher.signing_key.verify_key):
        raise UnlistedPublisherError(
            f"the network file does not list publisher key {publisher.public.text()}; "
            "add it to `publishers` (nodes and readers accept only listed keys)")

"""The publisher's signing key: one Nix-format secret key, from a file or the environment.

The same key signs the Nix ``Sig:`` of each narinfo and the network records
(format of the file: ``nix-store --generate-binary-cache-key``, a single
line ``name:base64(64-byte ed25519 secret)``).  Secrets never sit inline in a
config file: the CLIs take a file path, or the key text itself in the
environment variable :data:`SIGNING_KEY_ENV`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nix_formats.errors import NixFormatError
from nix_formats.keys import SecretKey
from storage_network.errors import AuthError
from storage_network.wire.write_auth import Publisher, parse_publisher_secret

from .errors import SecretError, SigningKeyError

SIGNING_KEY_ENV = "NIXSHARD_SIGNING_KEY"


def read_secret(path: str | Path | None, env: Mapping[str, str], env_name: str,
                what: str) -> str | None:
    """The stripped text of the secret file ``path``, else of ``env[env_name]``, else None.

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


def load_signing_key(path: str | Path | None, env: Mapping[str, str]
                     ) -> tuple[SecretKey, Publisher]:
    """The signing key as Nix key and network publisher.

    Args:
        path: the key file; None reads the key text from ``env[SIGNING_KEY_ENV]``.

    Raises:
        SigningKeyError: no key given, unreadable file, or malformed key.
    """
    source = str(path) if path is not None else f"${SIGNING_KEY_ENV}"
    try:
        text = read_secret(path, env, SIGNING_KEY_ENV, "signing key")
    except SecretError as exc:
        raise SigningKeyError(str(exc)) from exc
    if text is None:
        raise SigningKeyError(f"no signing key: give a key file or set ${SIGNING_KEY_ENV}")
    try:
        return SecretKey.parse(text), parse_publisher_secret(text)
    except (NixFormatError, AuthError) as exc:
        raise SigningKeyError(f"signing key {source}: {exc}") from exc

"""The cache secret of a private cache, from a file or the environment.

A private cache (network file ``private = true``; docs/private-caches.md)
keeps only ciphertext on its nodes; its publishers and gateways hold the
*keyring*: one or more cache secrets, newest first, one ``name:base64(32
bytes)`` line each (:class:`storage_network.Keyring`; ``nixshard key
generate-cache-secret`` writes them).  As with the signing key, the secret
comes from a file or from the environment variable :data:`CACHE_SECRET_ENV`,
never from the network file or the command line.  Audit, repair and gc
need no secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from storage_network import CacheSecretError, Keyring, Network

from .errors import CacheSecretConfigError
from .signing_key import read_secret

__all__ = ["CACHE_SECRET_ENV", "load_keyring"]

#: The environment variable holding the keyring's text when no file is given.
CACHE_SECRET_ENV = "NIXSHARD_CACHE_SECRET"


def load_keyring(path: str | Path | None, env: Mapping[str, str],
                 network: Network, *, optional: bool = False) -> Keyring | None:
    """The keyring in file ``path``, else in ``env[CACHE_SECRET_ENV]``; None for a
    public network given neither (and, when ``optional``, for a private one too).

    Raises:
        CacheSecretConfigError: the network is private, no secret is given and
            it is not ``optional`` (nothing of it could be read or written), the
            network is public and a secret is given (it would be ignored: a sign of the wrong
            network file), or the keyring does not parse (the message names
            the file or variable and the line, never key material).
        SecretError: the file cannot be read.
    """
    source = str(path) if path is not None else f"${CACHE_SECRET_ENV}"
    text = read_secret(path, env, CACHE_SECRET_ENV, "cache secret")
    if text is None:
        if network.private and not optional:
            raise CacheSecretConfigError(
                "the network is private (network file: private = true) and no cache secret "
                f"was given: give --cache-secret FILE or set ${CACHE_SECRET_ENV}; without it "
                "nothing of the cache can be read or written")
        return None
    if not network.private:
        raise CacheSecretConfigError(
            f"a cache secret was given ({source}) but the network file does not say "
            "private = true: a public network is neither sealed nor opened; "
            "check the network file, or drop the secret")
    try:
        return Keyring.parse(text)
    except CacheSecretError as exc:
        raise CacheSecretConfigError(f"cache secret {source}: {exc}") from exc


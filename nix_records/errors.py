"""The one exception tree of :mod:`nix_records`.

Every error this package raises on purpose is a :class:`NixRecordsError`.
Errors of the network itself (a node refused a shard or the record) stay
:class:`storage_network.StorageNetworkError`; malformed Nix text met while
building a record stays :class:`nix_formats.errors.NixFormatError`.
"""

from __future__ import annotations

__all__ = [
    "CacheSecretConfigError",
    "NixRecordsError",
    "RecordContentError",
    "SecretError",
    "SigningKeyError",
    "UnlistedPublisherError",
]


class NixRecordsError(Exception):
    """Base class of every error :mod:`nix_records` raises on purpose."""


class SecretError(NixRecordsError):
    """A secret (key, credentials) file cannot be read; the message names the file."""


class SigningKeyError(SecretError):
    """The signing key is missing, unreadable or not a Nix secret key
    (``name:base64(64 bytes)``, Nix ``src/libutil/crypto.cc``)."""


class CacheSecretConfigError(SecretError):
    """The cache secret does not fit the network: a private network and none given,
    a public one and one given, or a keyring file that does not parse."""


class UnlistedPublisherError(SigningKeyError):
    """The signing key is well formed but the network file does not list its public half
    under ``publishers`` (nodes and readers would refuse what it signs)."""


class RecordContentError(NixRecordsError):
    """A validly signed record does not hold what its key promises: its metadata is not
    the UTF-8 narinfo of that store path, or its NarSize is not the manifest's size."""

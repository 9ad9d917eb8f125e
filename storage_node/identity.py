"""A node's identity: its ed25519 key file, and the node id derived from the key.

The key file holds one line in the form of a Nix secret key (the format of
``nix-store --generate-binary-cache-key``): ``<node id>:<base64 of the
64-byte secret key (seed + public key)>``, where the name must be
:func:`storage_network.network_map.node_id_for_key` of the public half.  It
is created with mode 0600 and never rewritten.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from storage_network.capped_file import read_capped
from storage_network.errors import AuthError
from storage_network.network_map import node_id_for_key
from storage_network.wire.write_auth import parse_publisher_secret

from .errors import StorageNodeError

MAX_KEY_FILE_BYTES = 4096


class IdentityError(StorageNodeError):
    """The node key file cannot be read, created, or does not hold a node key."""


@dataclass(frozen=True)
class NodeIdentity:
    """A node's ed25519 key.

    Attributes:
        signing_key: the secret key.
    """

    signing_key: SigningKey

    @property
    def public_key(self) -> str:
        """The 32-byte public key, standard base64 (the map's ``public_key``)."""
        return base64.b64encode(bytes(self.signing_key.verify_key)).decode()

    @property
    def node_id(self) -> str:
        """The node id derived from the public key."""
        return node_id_for_key(bytes(self.signing_key.verify_key))

    def secret_text(self) -> str:
        """The key file's line (without the newline)."""
        raw = bytes(self.signing_key) + bytes(self.signing_key.verify_key)
        return f"{self.node_id}:{base64.b64encode(raw).decode()}"


def load_identity(path: Path) -> NodeIdentity:
    """Read the node key file at ``path``.

    Raises:
        IdentityError: unreadable, larger than 4 KiB, malformed, or named with an id
            that is not its key's.
    """
    try:
        data = read_capped(path, MAX_KEY_FILE_BYTES)
    except OSError as exc:
        raise IdentityError(f"cannot read node key file {path}: {exc.strerror}") from None
    try:
        secret = parse_publisher_secret(data.decode("utf-8"))
    except (UnicodeDecodeError, AuthError) as exc:
        raise IdentityError(f"node key file {path}: {exc}") from None
    identity = NodeIdentity(secret.signing_key)
    if secret.name != identity.node_id:
        raise IdentityError(f"node key file {path} is named {secret.name[:80]!r}, but its "
                            f"key's node id is {identity.node_id!r}")
    return identity


def create_identity(path: Path) -> NodeIdentity:
    """Generate a new node key and write it to ``path`` (mode 0600; ``path`` must not
    exist: an existing key is never overwritten).

    Raises:
        IdentityError: ``path`` exists, or cannot be written.
    """
    identity = NodeIdentity(SigningKey.generate())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise IdentityError(f"node key file {path} exists already") from None
    except OSError as exc:
        raise IdentityError(f"cannot create node key file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(identity.secret_text() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise IdentityError(f"cannot write node key file {path}: {exc.strerror}") from None
    return identity


def load_or_create_identity(path: Path) -> tuple[NodeIdentity, bool]:
    """The key at ``path``, generated first when the file is absent.

    Returns:
        ``(identity, created)``.

    Raises:
        IdentityError: see :func:`load_identity` and :func:`create_identity`.
    """
    if path.exists():
        return load_identity(path), False
    return create_identity(path), True

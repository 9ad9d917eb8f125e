"""Scoped credentials: the credentials file, its argon2 hashes, and checking a password.

Nix sends the credentials of its netrc file (``netrc-file`` in nix.conf)
as ``Authorization: Basic base64(user:password)`` (RFC 7617);
:class:`Authenticator` checks them against the credentials file, and
the gateway's middleware (:mod:`cache_server.auth`) decides what the
credential may do with its scopes.

The credentials file
--------------------

One credential per line, ``USER:SECRET[:SCOPES]``; blank lines and lines
starting with ``#`` are ignored, leading and trailing whitespace of a line
is dropped.

- ``USER`` is everything before the first ``:`` (a basic-auth user name
  cannot contain one); each user appears once.
- ``SECRET`` is an argon2 hash in the PHC string format
  (``$argon2id$v=19$m=65536,t=3,p=4$SALT$HASH``, what ``nixshard credentials
  add`` writes) or, still accepted, the plaintext password.  A hash never
  contains ``:``, so on a hashed line everything after the hash is the
  scopes field, and one that does not parse is an error.  A plaintext
  password may contain ``:``: the text after its last ``:`` is the scopes
  field only when it parses as one, otherwise it is part of the password.
  So a plaintext password whose own last ``:``-separated part reads as
  scopes (``pass:read``) must be followed by an explicit scopes field
  (``ci:pass:read:read,write``); better, hash it.  A plaintext secret
  cannot start with ``$argon2``.
- ``SCOPES`` is a comma-separated list (no spaces) of ``read``, ``write``
  (at least one of them) and any number of ``prefix=NAME`` items.  Omitted,
  it is ``read,write`` with no prefix (the old ``user:password`` lines keep
  their meaning).  With prefixes, the credential reaches only the store
  paths whose name (the part after ``<hash>-``) starts with one of them.

Examples::

    ci:$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$...:write,prefix=myproject-
    alice:$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$...:read
    legacy:plain:text:password

Checking a password
-------------------

Unknown users and wrong passwords get 401 (one message for both).  Argon2
verification is slow by design (about 0.1 s and 64 MiB with
argon2-cffi's defaults), so it runs on one worker thread, concurrent
requests with the same credentials share one verification, and successful
ones are remembered (bounded, keyed by an HMAC under a per-process random
key, so the cache holds no password).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import argon2

from nix_formats.errors import StorePathError
from nix_formats.store_path import MAX_NAME_LEN, validate_name

from .errors import UnauthorizedError

__all__ = [
    "DEFAULT_SCOPES",
    "Authenticator",
    "Credential",
    "CredentialsError",
    "Scopes",
    "hash_password",
    "parse_credentials",
    "parse_scopes",
]

#: Successful argon2 verifications remembered (LRU).
DEFAULT_CACHE_SIZE = 1024
_HASH_MARK = "$argon2"


class CredentialsError(ValueError):
    """A credentials file line that does not parse (the message names the line, never a
    secret), or a user name or password that cannot be stored."""


@dataclass(frozen=True)
class Scopes:
    """What a credential may do: ``read``, ``write``, and the store-path name
    ``prefixes`` it is limited to (empty: every store path)."""

    read: bool = True
    write: bool = True
    prefixes: tuple[str, ...] = ()

    def allows(self, name: str) -> bool:
        """Whether a store path named ``name`` (after ``<hash>-``) is within the prefixes."""
        return not self.prefixes or any(name.startswith(p) for p in self.prefixes)

    def text(self) -> str:
        """The scopes field of a credentials line, e.g. ``read,write,prefix=foo-``."""
        items = [s for s, on in (("read", self.read), ("write", self.write)) if on]
        return ",".join([*items, *(f"prefix={p}" for p in self.prefixes)])

    def limits(self) -> str:
        """The prefixes as a phrase for messages: ``store paths named foo-* or bar*``."""
        return "store paths named " + " or ".join(f"{p}*" for p in self.prefixes)


DEFAULT_SCOPES = Scopes()
"""``read,write`` on every store path: a line without a scopes field."""


def parse_scopes(text: str) -> Scopes:
    """The scopes of a credentials line's scopes field (see the module docstring).

    Raises:
        CredentialsError: an empty item, an unknown one, ``read``/``write`` twice,
            neither of them, or a prefix that is empty, too long or has characters
            a store-path name cannot have.
    """
    read = write = False
    prefixes: list[str] = []
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if item in ("read", "write"):
            if (read if item == "read" else write):
                raise CredentialsError(f"scope {item!r} given twice")
            read, write = read or item == "read", write or item == "write"
        elif eq and key == "prefix":
            try:
                validate_name(value)
            except StorePathError:
                raise CredentialsError(
                    f"prefix {value[:60]!r}: want 1 to {MAX_NAME_LEN} characters of a "
                    "store-path name (A-Z a-z 0-9 + - . _ ? =)") from None
            prefixes.append(value)
        else:
            raise CredentialsError(f"unknown scope {item[:40]!r}: want read, write or "
                                   "prefix=NAME, separated by commas")
    if not (read or write):
        raise CredentialsError(f"scopes {text[:60]!r} name neither read nor write")
    return Scopes(read, write, tuple(prefixes))


def _scopes_or_none(text: str) -> Scopes | None:
    try:
        return parse_scopes(text)
    except CredentialsError:
        return None


@dataclass(frozen=True)
class Credential:
    """One line of a credentials file.

    ``secret`` is an argon2 hash (PHC string) or a plaintext password (never in
    ``repr``); ``line``: its line number in the file (0: not from a file).
    """

    user: str
    secret: str = field(repr=False)
    scopes: Scopes = DEFAULT_SCOPES
    line: int = field(default=0, compare=False)

    @property
    def hashed(self) -> bool:
        """True for an argon2 hash, False for a plaintext password."""
        return self.secret.startswith(_HASH_MARK)

    def render(self) -> str:
        """The credentials-file line (no newline), scopes always written out."""
        return f"{self.user}:{self.secret}:{self.scopes.text()}"


def check_user(user: str) -> str:
    """``user`` if it can be a credentials-file and basic-auth user name.

    Raises:
        CredentialsError: empty, or with ``:``, ``#`` first, whitespace or a
            control character.
    """
    if not user or ":" in user or user.startswith("#") or \
            any(c.isspace() or not c.isprintable() for c in user):
        raise CredentialsError(f"bad user name {user[:40]!r}: want a non-empty name without "
                               "':', whitespace or control characters, not starting with '#'")
    return user


def _check_hash(secret: str) -> None:
    try:
        argon2.extract_parameters(secret)
    except (argon2.exceptions.InvalidHashError, ValueError) as exc:
        raise CredentialsError(f"the secret starts with {_HASH_MARK!r} but is not a valid "
                               "argon2 hash") from exc


def parse_credential(line: str) -> Credential:
    """One (stripped, non-comment) credentials line; see the module docstring.

    Raises:
        CredentialsError: what is wrong with it (never quoting the secret).
    """
    user, sep, rest = line.partition(":")
    if not sep or not rest:
        raise CredentialsError("want user:secret[:scopes]")
    check_user(user)
    if rest.startswith(_HASH_MARK):
        secret, sep, scopes_text = rest.partition(":")
        _check_hash(secret)
        scopes = parse_scopes(scopes_text) if sep else DEFAULT_SCOPES
    else:
        head, sep, tail = rest.rpartition(":")
        found = _scopes_or_none(tail) if sep else None
        secret, scopes = (head, found) if found is not None else (rest, DEFAULT_SCOPES)
        if not secret:
            raise CredentialsError("empty password")
    return Credential(user, secret, scopes)


def parse_credentials(text: str, source: str) -> dict[str, Credential]:
    """user -> credential from the lines of a credentials file (module docstring).

    Raises:
        CredentialsError: a malformed line or a user given twice (the message names
            the line of ``source``, never a secret).
    """
    creds: dict[str, Credential] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            cred = parse_credential(line)
        except CredentialsError as exc:
            raise CredentialsError(f"{source} line {number}: {exc}") from None
        if cred.user in creds:
            raise CredentialsError(f"{source} line {number}: user {cred.user!r} given twice")
        creds[cred.user] = Credential(cred.user, cred.secret, cred.scopes, number)
    return creds


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, argon2-cffi's default parameters) of ``password``.

    Takes about 0.1 s and 64 MiB.

    Raises:
        CredentialsError: an empty password.
    """
    if not password:
        raise CredentialsError("empty password")
    return argon2.PasswordHasher().hash(password)


def _verify(secret_hash: str, password: str) -> bool:
    try:
        return argon2.PasswordHasher().verify(secret_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def _basic(header: str | None) -> tuple[str, str]:
    if header is None:
        raise UnauthorizedError("this request needs credentials (HTTP basic auth; Nix sends "
                                "them from the netrc file named by `netrc-file`)")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise UnauthorizedError(f"unsupported authorization scheme {scheme[:20]!r}: want Basic")
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise UnauthorizedError("malformed basic-auth credentials") from None
    if not sep:
        raise UnauthorizedError("malformed basic-auth credentials (no ':')")
    return user, password


class Authenticator:
    """Checks basic-auth headers against ``credentials`` (user -> :class:`Credential`).

    Plaintext secrets are compared in constant time (SHA-256 digests, so not
    even the length shows); argon2 hashes are verified on one worker thread
    (bounding CPU and memory: about 64 MiB a verification), concurrent checks
    of the same user and password share one verification, and up to
    ``cache_size`` successful ones are remembered, keyed by an HMAC of
    (user, hash, password) under a random per-process key.  An unknown user
    costs what a wrong password costs (it is checked against a real hash).
    ``verifications`` counts the argon2 verifications run.  Call
    :meth:`close` when done.
    """

    def __init__(self, credentials: Mapping[str, Credential], *,
                 cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.credentials = dict(credentials)
        self.verifications = 0
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        self._key = secrets.token_bytes(32)
        self._executor: ThreadPoolExecutor | None = None
        self._decoy = next((c.secret for c in self.credentials.values() if c.hashed), None)
        #: Whether any credential has the write scope.
        self.can_write = any(c.scopes.write for c in self.credentials.values())

    async def authenticate(self, header: str | None) -> Credential:
        """The credential named by an ``Authorization`` header value, if its password is right.

        Raises:
            UnauthorizedError: no header, not Basic, malformed, unknown user or wrong
                password (one message for the last two).
        """
        user, password = _basic(header)
        cred = self.credentials.get(user)
        if cred is None:
            if self._decoy is not None:
                await self._argon2(user, self._decoy, password, remember=False)
            else:
                hmac.compare_digest(_digest("\0"), _digest(password))
            raise UnauthorizedError("wrong user or password")
        if cred.hashed:
            ok = await self._argon2(user, cred.secret, password, remember=True)
        else:
            ok = hmac.compare_digest(_digest(cred.secret), _digest(password))
        if not ok:
            raise UnauthorizedError("wrong user or password")
        return cred

    async def _argon2(self, user: str, secret_hash: str, password: str, *,
                      remember: bool) -> bool:
        key = hmac.new(self._key, b"".join(len(p).to_bytes(4, "big") + p for p in (
            user.encode(), secret_hash.encode(), password.encode())), hashlib.sha256).digest()
        if remember and key in self._cache:
            self._cache.move_to_end(key)
            return True
        pending = self._pending.get(key)
        if pending is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="nixshard-argon2")
            self.verifications += 1
            pending = asyncio.get_running_loop().run_in_executor(
                self._executor, _verify, secret_hash, password)
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        ok = await asyncio.shield(pending)
        if ok and remember:
            self._cache[key] = None
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return ok

    def close(self) -> None:
        """Stop the verification thread (verifications still queued are dropped)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()

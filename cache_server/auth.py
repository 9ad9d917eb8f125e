"""HTTP basic auth for writes (and, when configured, reads).

Nix sends the credentials of its netrc file (``netrc-file`` in nix.conf)
as ``Authorization: Basic base64(user:password)`` (RFC 7617).  The
credentials file holds one ``user:password`` per line; blank lines and
lines starting with ``#`` are ignored.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from .errors import ForbiddenError, UnauthorizedError


class CredentialsError(ValueError):
    """A credentials file line is not ``user:password``."""


def parse_credentials(text: str, source: str) -> dict[str, str]:
    """user -> password from the lines of a credentials file.

    Raises:
        CredentialsError: a line without ``:``, an empty user or password,
            or a user given twice (the message names the line of ``source``).
    """
    creds: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise CredentialsError(f"{source} line {number}: want user:password")
        if user in creds:
            raise CredentialsError(f"{source} line {number}: user {user!r} given twice")
        creds[user] = password
    return creds


def check_basic_auth(request: web.BaseRequest, credentials: dict[str, str]) -> str:
    """The user named by the request's valid basic-auth credentials.

    Raises:
        UnauthorizedError: no ``Authorization`` header, not Basic, malformed,
            unknown user or wrong password (one message for the last two).
    """
    header = request.headers.get("Authorization")
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
    expected = credentials.get(user)
    # compare even for unknown users, so timing does not tell users apart
    ok = hmac.compare_digest((expected or "\0").encode(), password.encode())
    if not sep or expected is None or not ok:
        raise UnauthorizedError("wrong user or password")
    return user


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/healthz"})


def auth_middleware(credentials: dict[str, str], read_auth: bool) -> Middleware:
    """A middleware that checks basic auth on every write, and on reads if ``read_auth``.

    Writes are ``PUT``, ``POST``, ``DELETE`` and ``PATCH``; with no
    credentials configured every write is refused (403: uploads disabled).
    ``/healthz`` is always open.  Raises :class:`UnauthorizedError` (401, with
    ``WWW-Authenticate``) for missing or wrong credentials and
    :class:`ForbiddenError` (403): the error middleware, outside this one,
    answers and logs them.
    """

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        write = request.method not in ("GET", "HEAD", "OPTIONS")
        if write and not credentials:
            raise ForbiddenError("uploads are disabled on this gateway (no upload "
                                 "credentials configured)")
        if (write or read_auth) and request.path not in OPEN_PATHS:
            check_basic_auth(request, credentials)
        return await handler(request)

    return check

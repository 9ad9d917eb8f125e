"""HTTP basic auth with scoped credentials, for writes (and, when configured, reads).

Nix sends the credentials of its netrc file (``netrc-file`` in nix.conf)
as ``Authorization: Basic base64(user:password)`` (RFC 7617).

The credentials file (users, secrets, scopes) and the checking of a
password (:class:`~cache_server.credentials.Authenticator`) are in
:mod:`cache_server.credentials`; this module is the middleware that asks
for credentials and checks each request against the credential's scopes.

What a credential may do
------------------------

- a write (``PUT``/``POST``/``DELETE``/``PATCH``: narinfo, NAR, log,
  listing, nix-cache-info, realisations) needs the ``write`` scope;
- with read auth on, a read (``GET``/``HEAD``) needs the ``read`` scope,
  except that a ``write`` credential may make the requests ``nix copy --to``
  makes before uploading (every ``HEAD``, and ``GET /nix-cache-info``);
- ``/healthz`` is always open;
- a credential with prefixes reaches a store path only when its name
  starts with one of them: the name is taken from the uploaded narinfo
  (``PUT /<hash>.narinfo``), the served narinfo (``GET``), the path's
  record (``/nar/...``, ``/<hash>.ls``), the ``.drv`` name (``/log/...``)
  or a realisation's ``outPath`` (uploaded or served, ``/realisations/...``).
  NAR uploads (staged, visible only through a narinfo) and requests that
  name no store path (``/nix-cache-info``, ``/metrics``, ``/nixshard/nodes``)
  are allowed; any other request (``/upstream/...``, whose file names carry
  no store-path name, unknown routes) is refused (403).

Unknown users and wrong passwords get 401 (one message for both); a known
credential without the needed scope or prefix gets 403 naming what it
lacks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from nix_formats.errors import NixFormatError, StorePathError
from nix_formats.narinfo import NarInfo
from nix_formats.store_path import StorePath, validate_hash_part

from .build_logs import parse_drv_name
from .credentials import Authenticator, Credential
from .errors import ForbiddenError
from .request_body import read_body
from .routes.nar import UPLOAD_FILE_RE, parse_nar_file
from .state import RECORDS

__all__ = [
    "OPEN_PATHS",
    "auth_middleware",
]

log = logging.getLogger("nixshard.serve")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Always open, even with read auth.
OPEN_PATHS = frozenset({"/healthz"})
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Routes that name no store path: any credential with the right scope reaches them.
_NO_STORE_PATH = frozenset({"/nix-cache-info", "/metrics", "/nixshard/nodes", "/healthz"})


def auth_middleware(authenticator: Authenticator, read_auth: bool) -> Middleware:
    """A middleware that checks basic auth on every write, and on reads if ``read_auth``.

    Writes are every method but ``GET``, ``HEAD`` and ``OPTIONS``; with no
    credential that may write, every write is refused (403: uploads
    disabled).  Scopes and prefixes as in the module docstring.  Raises
    :class:`UnauthorizedError` (401, with ``WWW-Authenticate``) for missing or
    wrong credentials and :class:`ForbiddenError` (403) for a missing scope or
    a store path outside the credential's prefixes: the error middleware,
    outside this one, answers and logs them (one line, no traceback).
    """

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        write = request.method not in _READS
        if write and not authenticator.can_write:
            raise ForbiddenError("uploads are disabled on this gateway (no upload "
                                 "credentials with the write scope configured)")
        if not (write or read_auth):
            return await handler(request)
        cred = await authenticator.authenticate(request.headers.get("Authorization"))
        scopes = cred.scopes
        if write and not scopes.write:
            raise ForbiddenError(f"user {cred.user!r} lacks the write scope needed to upload "
                                 f"(its scopes: {scopes.text()})")
        if not write and not scopes.read and not (
                scopes.write and (request.method == "HEAD" or request.path == "/nix-cache-info")):
            raise ForbiddenError(f"user {cred.user!r} lacks the read scope needed to read "
                                 f"(its scopes: {scopes.text()})")
        if not scopes.prefixes:
            return await handler(request)
        return await _within_prefixes(request, handler, cred, write)

    return check


def _refuse(cred: Credential, what: str) -> ForbiddenError:
    return ForbiddenError(f"user {cred.user!r} may not {what}: it is limited to "
                          f"{cred.scopes.limits()}")


async def _within_prefixes(request: web.Request, handler: Handler, cred: Credential,
                           write: bool) -> web.StreamResponse:
    """Answer ``request`` for a prefix-limited credential (see the module docstring)."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else None
    info = request.match_info
    if route in _NO_STORE_PATH:
        return await handler(request)
    if route in _NAMED_BY_BODY:
        name_of = _NAMED_BY_BODY[route]
        if write:
            body = await read_body(request, request.path[:120])  # aiohttp keeps it for the handler
            name = name_of(body)
            if name is not None and not cred.scopes.allows(name):
                raise _refuse(cred, f"upload {name}")
            return await handler(request)  # None: the handler refuses the body (400)
        response = await handler(request)
        if 200 <= response.status < 300:
            served = getattr(response, "body", None)
            name = name_of(served) if isinstance(served, bytes) else None
            if not cred.scopes.allows(name or ""):  # no name: no prefix allows it
                raise _refuse(cred, f"read {request.path[:120]}")
        return response
    if route in ("/nar/{file}", "/{hash}.ls"):
        if write or UPLOAD_FILE_RE.match(info.get("file", "")):
            return await handler(request)  # staged uploads and dropped listings: no path
        hash_part = parse_nar_file(info["file"]) if "file" in info else \
            validate_hash_part(info["hash"])
        entry = await request.app[RECORDS].get(hash_part)  # its errors answer as the handler's
        if not cred.scopes.allows(entry.narinfo.store_path.name):
            raise _refuse(cred, f"read {request.path[:120]}")
        return await handler(request)
    if route == "/log/{drv}":
        drv = parse_drv_name(info["drv"])
        if not cred.scopes.allows(StorePath.parse_basename(drv).name):
            raise _refuse(cred, f"{'upload' if write else 'read'} the build log of {drv}")
        return await handler(request)
    raise _refuse(cred, f"reach {request.path[:120]!r}, which names no store path that "
                        "could be checked against its prefixes")


def _narinfo_name(body: bytes) -> str | None:
    """The store-path name of a narinfo; None if ``body`` is not one."""
    try:
        return NarInfo.parse(body.decode("utf-8")).store_path.name
    except (UnicodeDecodeError, NixFormatError):
        return None


def _realisation_name(body: bytes) -> str | None:
    """The name of a realisation's ``outPath`` (JSON, Nix ``Realisation::toJSON``); None
    if ``body`` is not one."""
    try:
        out_path = json.loads(body)["outPath"]
        return StorePath.parse_basename(out_path.rpartition("/")[2]).name
    except (ValueError, TypeError, KeyError, AttributeError, StorePathError):
        return None


#: Routes whose body names the store path (uploaded or served), and how to read it.
_NAMED_BY_BODY: dict[str, Callable[[bytes], str | None]] = {
    "/{hash}.narinfo": _narinfo_name,
    "/realisations/{id}.doi": _realisation_name,
}

"""HTTP basic auth with scoped credentials, for writes (and, when configured, reads).

Nix sends the credentials of its netrc file (``netrc-file`` in nix.conf)
as ``Authorization: Basic base64(user:password)`` (RFC 7617).

The credentials file (users, secrets, scopes) and the checking of a
password (:class:`~cache_server.credentials.Authenticator`) are in
:mod:`cache_server.credentials`; this module is the check that asks for
credentials and checks their read and write scopes (:func:`auth_guard`, run
by the gateway's one middleware before the handler), and the helper
handlers call to check a store path against a credential's prefixes.

What a credential may do
------------------------

- a write (``PUT``/``POST``/``DELETE``/``PATCH``: narinfo, NAR, log,
  listing, nix-cache-info, realisations) needs the ``write`` scope;
- with read auth on, a read (``GET``/``HEAD``) needs the ``read`` scope,
  except that a ``write`` credential may make the requests ``nix copy --to``
  makes before uploading (every ``HEAD``, and ``GET /nix-cache-info``);
- ``/healthz`` is always open;
- a credential with prefixes reaches a store path only when its name
  starts with one of them.  The guard does not know the name: the
  handler that has it (the uploaded or served narinfo, the path's record
  for ``/nar/...`` and ``/<hash>.ls``, the ``.drv`` name for ``/log/...``,
  a realisation's ``outPath``) calls :func:`require_name` before it
  reads, fetches or stores anything of that path.  Only handlers
  registered with :func:`checks_names` (they call it) or
  :func:`names_no_store_path` (``/nix-cache-info``, ``/metrics``,
  ``/nixshard/nodes``, staged NAR uploads, dropped listings) are run for a
  prefix-limited credential; any other request (``/upstream/...``, whose
  file names carry no store-path name, unknown routes) is refused (403)
  before its handler runs.

Unknown users and wrong passwords get 401 (one message for both); a known
credential without the needed scope or prefix gets 403 naming what it
lacks.  The credential of an authenticated request is ``request[CREDENTIAL]``
(absent when the request needed none).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from http_serving.metrics import Guard

from .credentials import Authenticator, Credential
from .errors import ForbiddenError

__all__ = [
    "CREDENTIAL",
    "OPEN_PATHS",
    "auth_guard",
    "checks_names",
    "names_no_store_path",
    "require_name",
]

log = logging.getLogger("nixshard.serve")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
#: Always open, even with read auth.
OPEN_PATHS = frozenset({"/healthz"})
#: The credential an authenticated request came with (absent: none was needed).
CREDENTIAL = web.RequestKey("credential", Credential)
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
# Handlers a prefix-limited credential may reach: they check every store path they
# reach with require_name, or reach none.
_CHECKS_NAMES: set[Handler] = set()
_NAMES_NO_STORE_PATH: set[Handler] = set()


def checks_names(handler: H) -> H:
    """Register ``handler`` as one that calls :func:`require_name` with the name of
    every store path it reads or writes (before it does)."""
    _CHECKS_NAMES.add(handler)
    return handler


def names_no_store_path(handler: H) -> H:
    """Register ``handler`` as one that reaches no store path: any credential with the
    right scope may call it, prefixes or not."""
    _NAMES_NO_STORE_PATH.add(handler)
    return handler


def _refuse(cred: Credential, what: str) -> ForbiddenError:
    return ForbiddenError(f"user {cred.user!r} may not {what}: it is limited to "
                          f"{cred.scopes.limits()}")


def require_name(request: web.Request, name: str, what: str | None = None) -> None:
    """Refuse ``request`` unless its credential may reach the store path named ``name``
    (the part after ``<hash>-``).

    ``what`` is what the refusal says the user may not do; by default
    ``upload <name>`` for a write and ``read <request path>`` for a read (which
    does not name the path).  A request without a credential (reads without
    read auth) or with one without prefixes passes.

    Raises:
        ForbiddenError: the credential has prefixes and none starts ``name``.
    """
    cred = request.get(CREDENTIAL)
    if cred is None or cred.scopes.allows(name):
        return
    if what is None:
        what = f"read {request.path[:120]}" if request.method in _READS else f"upload {name}"
    raise _refuse(cred, what)


def auth_guard(authenticator: Authenticator, read_auth: bool) -> Guard:
    """The check of basic auth on every write, and on reads if ``read_auth``, as a
    :data:`http_serving.metrics.Guard` (run by the gateway's one middleware, inside
    its error mapping): for a request that needs no credential (a read without
    read auth, ``/healthz``) it returns None without looking further, else the
    check to await.

    Writes are every method but ``GET``, ``HEAD`` and ``OPTIONS``; with no
    credential that may write, every write is refused (403: uploads
    disabled).  Scopes as in the module docstring; the credential is kept as
    ``request[CREDENTIAL]`` for :func:`require_name`.  The check raises
    :class:`UnauthorizedError` (401, with ``WWW-Authenticate``) for missing or
    wrong credentials and :class:`ForbiddenError` (403) for a missing scope, or
    a prefix-limited credential on a route that cannot check its prefixes: the
    error map answers and logs them (one line, no traceback).
    """

    async def check(request: web.Request, write: bool) -> None:
        if write and not authenticator.can_write:
            raise ForbiddenError("uploads are disabled on this gateway (no upload "
                                 "credentials with the write scope configured)")
        cred = await authenticator.authenticate(request.headers.get("Authorization"))
        scopes = cred.scopes
        if write and not scopes.write:
            raise ForbiddenError(f"user {cred.user!r} lacks the write scope needed to upload "
                                 f"(its scopes: {scopes.text()})")
        if not write and not scopes.read and not (
                scopes.write and (request.method == "HEAD" or request.path == "/nix-cache-info")):
            raise ForbiddenError(f"user {cred.user!r} lacks the read scope needed to read "
                                 f"(its scopes: {scopes.text()})")
        request[CREDENTIAL] = cred
        if scopes.prefixes:
            route_handler = request.match_info.handler
            if route_handler not in _CHECKS_NAMES and route_handler not in _NAMES_NO_STORE_PATH:
                raise _refuse(cred, f"reach {request.path[:120]!r}, which names no store "
                                    "path that could be checked against its prefixes")

    def guard(request: web.Request) -> Awaitable[None] | None:
        write = request.method not in _READS
        # a read without read auth (the common request) passes before its path is looked at
        if not (write or read_auth) or request.path in OPEN_PATHS:
            return None
        return check(request, write)

    return guard

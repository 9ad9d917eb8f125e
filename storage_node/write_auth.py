"""Checking the publisher signature on write requests (see :mod:`storage_network.auth`)."""

from __future__ import annotations

from aiohttp import web

from storage_network.auth import DATE_HEADER, PublisherKey, verify_write
from storage_network.errors import AuthError

from .body import read_body
from .errors import Forbidden, Unauthorized

MAX_DELETE_BODY_BYTES = 1024


def require_signature_headers(request: web.BaseRequest) -> None:
    """Refuse, before reading any body, a write that carries no signature at all.

    Raises:
        Unauthorized: the Authorization or X-Nixshard-Date header is missing or empty.
    """
    missing = [h for h in ("Authorization", DATE_HEADER) if not request.headers.get(h)]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise Unauthorized(f"write without publisher signature: missing {' and '.join(missing)}"
                           f" header{plural}")


def check_write(request: web.BaseRequest, publishers: dict[str, PublisherKey], path: str,
                body_sha256: bytes) -> PublisherKey:
    """Verify the request's signature over ``path`` and the body digest.

    ``path`` is the canonical path of the object (``/shards/<id>``,
    ``/records/<key>``), which is what the publisher signs.

    Returns:
        The accepted publisher key that signed the request.

    Raises:
        Unauthorized: signature headers missing.
        Forbidden: unknown key, bad signature, malformed header, or a date
            more than :data:`storage_network.auth.MAX_SKEW_SECONDS` away.
    """
    require_signature_headers(request)
    try:
        return verify_write(publishers, request.method, path,
                            request.headers.get("Authorization"),
                            request.headers.get(DATE_HEADER), body_sha256)
    except AuthError as exc:
        raise Forbidden(str(exc)) from exc


async def check_delete(request: web.Request, publishers: dict[str, PublisherKey]) -> PublisherKey:
    """Verify a signed ``DELETE``: signed over the path *with* its query (the
    condition, ``?before=`` or ``?sha256=``) and a body of at most
    :data:`MAX_DELETE_BODY_BYTES` (normally empty).

    Returns:
        The accepted publisher key that signed the request.

    Raises:
        Unauthorized: signature headers missing (checked before the body is read).
        PayloadTooLarge: a body over the limit.
        Forbidden: as :func:`check_write`.
    """
    require_signature_headers(request)
    _, digest = await read_body(request, MAX_DELETE_BODY_BYTES, "delete request")
    return check_write(request, publishers, request.path_qs, digest)

"""Checking the publisher signature on write requests (see :mod:`storage_network.auth`)."""

from __future__ import annotations

from aiohttp import web

from storage_network.auth import DATE_HEADER, PublisherKey, verify_write
from storage_network.errors import AuthError

from .errors import Forbidden, Unauthorized


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

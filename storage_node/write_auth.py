"""Checking the publisher signature on write requests (see :mod:`storage_network.wire.write_auth`).

Everything that needs no body byte is checked first (:func:`precheck_write`:
header syntax, date window, key name, node binding, an unused nonce), so
an unsigned, stale, foreign or replayed write is refused before its body
is read; the signature itself is checked once the body is in
(:func:`check_write`), and only then is the nonce recorded as used.

Deletes need the maintainer role (:func:`check_delete`, before the body is
read; :func:`check_tombstone` for a tombstone ``PUT``: sealed or sent by a
maintainer): a key that lacks it is refused with 403 ``key ... lacks the
maintainer role``.
"""

from __future__ import annotations

from aiohttp import web

from storage_network.errors import AuthError, MissingSignatureError
from storage_network.wire.write_auth import (
    MAX_SKEW_SECONDS,
    PublisherKey,
    WriteClaim,
    check_may_delete,
    check_may_store_tombstone,
    parse_write_claim,
)

from .appkeys import CONFIG, NONCES
from .body import read_body
from .errors import Forbidden, Replayed, Unauthorized

MAX_DELETE_BODY_BYTES = 1024
WRITE_WINDOW_SECONDS = MAX_SKEW_SECONDS


def precheck_write(request: web.Request) -> WriteClaim:
    """Check a write's signature headers before any body byte is read.

    Raises:
        Unauthorized: the Authorization or date header is missing.
        Forbidden: malformed headers, a stale date, an unknown key, a write
            bound to another node, a malformed nonce.
        Replayed: the nonce was used by a write this node accepted.
    """
    config = request.app[CONFIG]
    try:
        claim = parse_write_claim(config.publishers, config.node_id, request.headers,
                                  max_skew=WRITE_WINDOW_SECONDS)
    except MissingSignatureError as exc:
        raise Unauthorized(str(exc)) from exc
    except AuthError as exc:
        raise Forbidden(str(exc)) from exc
    if request.app[NONCES].seen(claim.nonce):
        raise Replayed(f"replayed write: nonce {claim.nonce} was already used")
    return claim


def check_write(request: web.Request, claim: WriteClaim, path: str,
                body_sha256: bytes) -> PublisherKey:
    """Verify ``claim``'s signature over ``path`` and the body digest, then use its nonce.

    ``path`` is the canonical path of the object (``/shards/<id>``,
    ``/records/<key>``, a delete's path with its query), which is what the
    publisher signs.

    Returns:
        The accepted publisher key that signed the request.

    Raises:
        Forbidden: the signature does not verify.
        Replayed: the same write was accepted meanwhile (its nonce is used).
    """
    try:
        key = claim.verify(request.method, path, body_sha256)
    except AuthError as exc:
        raise Forbidden(str(exc)) from exc
    if not request.app[NONCES].use(claim.nonce, claim.date):
        raise Replayed(f"replayed write: nonce {claim.nonce} was already used")
    return key


async def check_delete(request: web.Request) -> PublisherKey:
    """Verify a signed ``DELETE``: signed over the path *with* its query (the
    condition, ``?before=`` or ``?sha256=``) and a body of at most
    :data:`MAX_DELETE_BODY_BYTES` (normally empty).

    Returns:
        The accepted publisher key that signed the request.

    Raises:
        Unauthorized, Forbidden, Replayed: as :func:`precheck_write` (checked
            before the body is read) and :func:`check_write`.
        Forbidden: the key lacks the maintainer role (checked before the body
            is read).
        PayloadTooLarge: a body over the limit.
    """
    claim = precheck_write(request)
    try:
        check_may_delete(claim.key, f"delete {request.path.split('/')[1]}")
    except AuthError as exc:
        raise Forbidden(str(exc)) from exc
    _, digest = await read_body(request, MAX_DELETE_BODY_BYTES, "delete request")
    return check_write(request, claim, request.path_qs, digest)


def check_tombstone(signer: PublisherKey, sender: PublisherKey) -> None:
    """Refuse to store a tombstone unless a maintainer signed it or sends it
    (the rule of :func:`~storage_network.wire.write_auth.check_may_store_tombstone`).

    ``signer`` sealed the tombstone, ``sender`` signed the write.

    Raises:
        Forbidden: neither key has the maintainer role.
    """
    try:
        check_may_store_tombstone(signer, sender.may_delete)
    except AuthError as exc:
        raise Forbidden(str(exc)) from exc

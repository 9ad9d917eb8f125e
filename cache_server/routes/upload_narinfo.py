"""``PUT /<hash32>.narinfo``: commit an uploaded store path (``nix copy --to http://...``).

Nix PUTs the narinfo after the NAR it names (``URL: nar/<FileHash>.nar<ext>``).
The gateway checks, in order, and answers the first failure:

- 403 uploads disabled; 413 a narinfo over 1 MiB (aiohttp's ``client_max_size``);
  400 a bad hash, a body cut short, a narinfo that does not parse,
  describes another store path, or names a NAR that was not uploaded;
- 403 no ``Sig:`` by a trusted upload key (unless ``sign_uploads``: then
  the gateway adds its own);
- 400 FileHash / FileSize that do not match the staged file, or a NAR
  that is not the narinfo's (NarHash, NarSize, NAR grammar);
- 503 the network did not store it (the staged NAR is kept: retry works).

On success (201) the path's record is in the network, so every gateway on
the network serves it; the staged file is removed.  One path has one
record (docs/consistency.md, "One path, one record"): before ingesting, the
gateway looks the path up (its record lookup, never a remembered absence);
a path the network already holds with the same NarHash answers 200 and
stores nothing, one it holds with another NarHash answers 409 ``<store
path> exists with another NarHash`` at once.  When another gateway commits
the path first while this one ingests, the publish is refused
(:class:`~storage_network.errors.RecordConflictError`) and the answer is
the same 409, with no record written.  Either way the staged NAR is
removed.  Concurrent uploads of one path through this gateway are ingested
once (the others wait for that ingest).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from nix_formats import nix32
from nix_formats.errors import NixFormatError
from nix_formats.hash import parse_nix_hash
from nix_formats.keys import sign_narinfo, verify_narinfo
from nix_formats.narinfo import NarInfo
from nix_formats.store_path import validate_hash_part
from storage_network import NotFoundError, RecordConflictError, StorageNetworkError

from ..auth import checks_names, require_name
from ..config import UploadConfig
from ..errors import CacheServerError, ForbiddenError, PathConflictError, UploadRejectedError
from ..ingest import ingest_nar
from ..metrics import UPLOADS
from ..request_body import read_body
from ..state import CONFIG, INGESTS, NETWORK, RECORDS, STAGING
from ..uploads import gateway_signs
from .nar import UPLOAD_FILE_RE

log = logging.getLogger("nixshard.serve")


def _check_signature(narinfo: NarInfo, uploads: UploadConfig) -> None:
    """Keep a narinfo signed by a trusted upload key; sign one that is not (sign_uploads).

    Raises:
        ForbiddenError: no trusted signature and ``sign_uploads`` is off.
    """
    if gateway_signs(uploads, verify_narinfo(narinfo, uploads.trusted_keys),
                     narinfo.store_path.path,
                     "sign it (nix copy --to 'http://...?secret-key=FILE')"):
        sign_narinfo(narinfo, uploads.nix_key)


def _conflict(narinfo: NarInfo) -> PathConflictError:
    return PathConflictError(f"{narinfo.store_path.path} exists with another NarHash")


async def _held(request: web.Request, narinfo: NarInfo) -> bool:
    """True when the network holds the path with ``narinfo``'s NarHash, False when it
    does not hold it.

    Raises:
        PathConflictError: it holds the path with another NarHash.
        StorageNetworkError, BadRecordError: from the record lookup.
    """
    try:
        entry = await request.app[RECORDS].get(narinfo.store_path.hash_part,
                                                remembered_absence=False)
    except NotFoundError:
        return False
    if entry.narinfo.nar_hash_digest() != narinfo.nar_hash_digest():
        raise _conflict(narinfo)
    return True


async def _commit(request: web.Request, narinfo: NarInfo, uploads: UploadConfig) -> int:
    """Ingest the staged NAR of ``narinfo``; 201, or 200 if the network already has the path."""
    net = request.app[NETWORK]
    staging = request.app[STAGING]
    name = narinfo.url.removeprefix("nar/")
    staged = staging.path(name) if narinfo.url.startswith("nar/") and \
        UPLOAD_FILE_RE.match(name) else None
    try:
        if await _held(request, narinfo):
            UPLOADS.labels("exists").inc()
            if staged is not None:
                staging.remove(name)
            return 200
    except PathConflictError:
        if staged is not None:
            staging.remove(name)
        raise
    if staged is None:
        raise UploadRejectedError(f"{narinfo.store_path.path}: its NAR {narinfo.url} was not "
                                  "uploaded (PUT it before the narinfo)")
    file_size = staged.stat().st_size
    if narinfo.file_size is not None and narinfo.file_size != file_size:
        raise UploadRejectedError(f"{narinfo.store_path.path}: FileSize {narinfo.file_size} but "
                                  f"{narinfo.url} has {file_size} bytes")
    if narinfo.file_hash is not None and \
            parse_nix_hash(narinfo.file_hash) != ("sha256", nix32.decode(name[:52])):
        raise UploadRejectedError(f"{narinfo.store_path.path}: FileHash {narinfo.file_hash} "
                                  f"is not the hash of {narinfo.url}")
    try:
        await ingest_nar(net, uploads.publisher, narinfo, staged)
    except UploadRejectedError:
        staging.remove(name)
        raise
    except RecordConflictError as exc:  # another gateway committed the path first
        staging.remove(name)
        request.app[RECORDS].forget(narinfo.store_path.hash_part)
        raise _conflict(narinfo) from exc
    staging.remove(name)
    request.app[RECORDS].forget(narinfo.store_path.hash_part)
    return 201


@checks_names
async def put_narinfo(request: web.Request) -> web.Response:
    """Check and commit an uploaded narinfo and its NAR (see the module docstring)."""
    uploads = request.app[CONFIG].uploads
    ingests = request.app[INGESTS]
    try:
        if uploads is None:
            raise ForbiddenError("uploads are disabled on this gateway")
        hash_part = validate_hash_part(request.match_info["hash"])
        body = await read_body(request, f"{hash_part}.narinfo")  # 413 past client_max_size
        try:
            narinfo = NarInfo.parse(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise UploadRejectedError(f"narinfo is not UTF-8: {exc}") from exc
        require_name(request, narinfo.store_path.name)
        if narinfo.store_path.hash_part != hash_part:
            raise UploadRejectedError(f"{hash_part}.narinfo describes {narinfo.store_path.path}")
        _check_signature(narinfo, uploads)
        while (running := ingests.get(hash_part)) is not None:
            await asyncio.shield(asyncio.wait([running]))
        task: asyncio.Task[int] = asyncio.create_task(_commit(request, narinfo, uploads))
        ingests[hash_part] = task
        task.add_done_callback(
            lambda t: ingests.pop(hash_part) if ingests.get(hash_part) is t else None)
        # shielded: a client that hangs up does not cancel an ingest halfway
        status = await asyncio.shield(task)
    except (CacheServerError, NixFormatError, StorageNetworkError) as exc:
        UPLOADS.labels("conflict" if isinstance(exc, PathConflictError) else
                       "rejected" if isinstance(exc, CacheServerError | NixFormatError)
                       else "failed").inc()
        raise  # answered (and logged) by the error middleware
    if status == 201:
        UPLOADS.labels("stored").inc()
        log.info("stored %s (uploaded)", narinfo.store_path.path)
    return web.Response(status=status, text="stored\n" if status == 201 else "exists\n")


def setup(app: web.Application) -> None:
    """Register ``PUT /{hash}.narinfo`` on ``app``."""
    app.router.add_put("/{hash}.narinfo", put_narinfo)

"""``PUT /nar/<FileHash>.nar<ext>``: a NAR uploaded by ``nix copy --to http://...``.

Nix (``src/libstore/binary-cache-store.cc``) names the compressed NAR after
the nix32 SHA-256 of the file and PUTs it before the narinfo.  The body is
streamed to the staging directory and kept only if its hash is the one in
its name (:mod:`cache_server.staging`); the narinfo upload then names it
and ingests it.  Answers 201; 400 bad name or a body that does not match
its name; 413 too large.  Credentials are checked by the auth middleware.
"""

from __future__ import annotations

from aiohttp import web

from nix_formats import nix32

from ..auth import names_no_store_path
from ..errors import BadRequestError, ForbiddenError
from ..state import CONFIG, STAGING
from .nar import UPLOAD_FILE_RE


@names_no_store_path  # staged: reachable only through a narinfo, checked then
async def put_nar(request: web.Request) -> web.Response:
    """Stage the uploaded NAR file."""
    name = request.match_info["file"]
    uploads = request.app[CONFIG].uploads
    if uploads is None:
        raise ForbiddenError("uploads are disabled on this gateway")
    if not UPLOAD_FILE_RE.match(name):
        raise BadRequestError(f"bad upload name nar/{name[:100]}: want "
                              "nar/<nix32 sha256 of the file>.nar[.xz|.zst|.bz2|.br]")
    digest = nix32.decode(name[:52])
    request.app[STAGING].sweep()  # drop uploads nobody claimed within max_age
    await request.app[STAGING].receive(request, name, uploads.max_bytes, sha256=digest)
    return web.Response(status=201, text="staged\n")


def setup(app: web.Application) -> None:
    """Register ``PUT /nar/{file}`` on ``app``."""
    app.router.add_put("/nar/{file}", put_nar)

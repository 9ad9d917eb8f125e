"""``GET``/``HEAD``/``PUT /nix-cache-info`` (format: Nix src/libstore/binary-cache-store.cc).

Nix PUTs a ``nix-cache-info`` when it finds none; this gateway always has
one, so a PUT (authenticated by the middleware) is checked for the same
store directory and otherwise ignored.
"""

from __future__ import annotations

from aiohttp import web

from ..auth import names_no_store_path
from ..config import ServeConfig
from ..errors import BadRequestError
from ..request_body import read_body
from ..state import CONFIG

MAX_BYTES = 4096


@names_no_store_path
async def nix_cache_info(request: web.Request) -> web.Response:
    """The cache's StoreDir, WantMassQuery and Priority."""
    config: ServeConfig = request.app[CONFIG]
    text = f"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: {config.priority}\n"
    return web.Response(text=text, content_type="text/x-nix-cache-info")


@names_no_store_path
async def put_nix_cache_info(request: web.Request) -> web.Response:
    """200 when the uploaded file names ``StoreDir: /nix/store``; 400 otherwise."""
    body = await read_body(request, "nix-cache-info")
    lines = body.decode("utf-8", "replace").splitlines()
    store_dirs = [line.partition(":")[2].strip() for line in lines if line.startswith("StoreDir:")]
    if len(body) > MAX_BYTES or store_dirs not in ([], ["/nix/store"]):
        raise BadRequestError("this cache serves StoreDir /nix/store only")
    return web.Response(text="ok\n")


def setup(app: web.Application) -> None:
    """Register ``GET``/``HEAD``/``PUT /nix-cache-info`` on ``app``."""
    app.router.add_get("/nix-cache-info", nix_cache_info)
    app.router.add_put("/nix-cache-info", put_nix_cache_info)

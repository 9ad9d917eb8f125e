"""The nix environment of tests and the demo: nix's narinfo disk cache is never used.

Local gateways come and go on reused ports; a narinfo nix cached for an earlier
gateway on the same port (another network, another key) once answered for the
one listening there now, and ``nix copy --from`` refused the path as unsigned.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from aiohttp import web

from nixshard.demo import build_closure
from nixshard.localnet import env_with_nix_config
from tests.support.servers import serve_app

pytestmark = pytest.mark.nix


def path_info(store: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nix", "path-info", "--json", "--store", store,
                           "--option", "download-attempts", "1", path],
                          capture_output=True, text=True, env=env_with_nix_config(), check=False)


async def test_a_gateway_gone_from_a_port_is_not_answered_for_by_nix_s_cache() -> None:
    top = build_closure("nix-env-test")[0]  # a valid store path; the cache below serves it
    hash_part = top.removeprefix("/nix/store/")[:32]
    body = (f"StorePath: {top}\nURL: nar/x.nar\nCompression: none\n"
            "NarHash: sha256:0000000000000000000000000000000000000000000000000000\n"
            "NarSize: 1\n")

    async def cache_info(_: web.Request) -> web.Response:
        return web.Response(text="StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n")

    async def answer(_: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/x-nix-narinfo")

    app = web.Application()
    app.router.add_get("/nix-cache-info", cache_info)
    app.router.add_get(f"/{hash_part}.narinfo", answer)
    async with serve_app(app) as url:
        seen = await asyncio.to_thread(path_info, url, top)
        assert seen.returncode == 0 and top in seen.stdout, seen.stderr
    gone = await asyncio.to_thread(path_info, url, top)
    assert gone.returncode != 0, "nix answered from its narinfo disk cache"

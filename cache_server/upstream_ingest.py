"""Copying a path served from an upstream cache into the network, in the background.

After the gateway serves an upstream narinfo (and ``ingest`` is on), it
downloads the upstream's NAR file to the staging directory and ingests it
(:func:`cache_server.ingest.ingest_nar`: NarHash, NarSize and the NAR
grammar are checked, the record is written last).  The upstream's ``Sig:``
lines are kept, so Nix clients that trust the upstream's key accept the
path when the network serves it later.  One ingest per path at a time;
failures are logged and counted, and the next request tries again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import web

from .ingest import ingest_nar
from .metrics import UPSTREAM
from .state import CONFIG, INGESTS, NETWORK, RECORDS, STAGING, UPSTREAMS
from .upstream import UpstreamHit

log = logging.getLogger("nixshard.serve")
PIECE = 1 << 20


def start_upstream_ingest(app: web.Application, hit: UpstreamHit) -> None:
    """Start copying ``hit`` into the network unless ingest is off or one already runs."""
    upstream = app[CONFIG].upstream
    ingests = app[INGESTS]
    key = hit.narinfo.store_path.hash_part
    if upstream is None or not upstream.ingest or upstream.publisher is None or key in ingests:
        return
    task = asyncio.create_task(_ingest(app, hit))
    ingests[key] = task
    task.add_done_callback(lambda t: ingests.pop(key) if ingests.get(key) is t else None)


async def _ingest(app: web.Application, hit: UpstreamHit) -> None:
    upstream = app[CONFIG].upstream
    assert upstream is not None and upstream.publisher is not None
    staging = app[STAGING]
    name = f"upstream-{uuid.uuid4().hex}"
    path = staging.dir / name
    loop = asyncio.get_running_loop()
    try:
        async with await app[UPSTREAMS].open_nar(hit) as resp:
            with open(path, "wb") as f:
                async for piece in resp.content.iter_chunked(PIECE):
                    await loop.run_in_executor(None, f.write, piece)
        await ingest_nar(app[NETWORK], upstream.publisher, hit.narinfo, path)
        app[RECORDS].forget(hit.narinfo.store_path.hash_part)
        UPSTREAM.labels("ingested").inc()
        log.info("ingested %s from %s", hit.narinfo.store_path.path, hit.base_url)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a background copy: log, count, retry next time
        UPSTREAM.labels("ingest_failed").inc()
        log.warning("ingest of %s from %s failed: %s", hit.narinfo.store_path.path,
                    hit.base_url, exc)
    finally:
        staging.remove(name)

"""Copying a path served from an upstream cache into the network, in the background.

After the gateway serves an upstream narinfo (and ``ingest`` is on), it
downloads the upstream's NAR file to the staging directory and ingests it
(:func:`cache_server.ingest.ingest_nar`: NarHash, NarSize and the NAR
grammar are checked, decompression is capped at NarSize, the record is
written last).  The upstream's ``Sig:`` lines are kept, so Nix clients that
trust the upstream's key accept the path when the network serves it later.
One ingest per path at a time; failures are logged and counted, and the
next request tries again.

The upstream's signature covers NarHash and NarSize but not ``URL``,
``Compression``, ``FileSize`` or ``FileHash``, so those can never widen
what is fetched.  The download is capped before it starts, at the least of
``FileSize`` (when given), the largest file the compression can honestly
make of the signed NarSize (:func:`nix_formats.compression.max_compressed_size`;
an unknown compression is refused before any byte is fetched) and
``--max-upload-bytes``; a Content-Length over the cap is refused at once,
and a body that goes past it is cut off as soon as it does (nothing is
staged).  The URL stays under that upstream (:mod:`cache_server.upstream`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

from aiohttp import web

from nix_formats.compression import max_compressed_size
from nix_formats.narinfo import NarInfo

from .errors import CacheServerError
from .ingest import ingest_nar
from .metrics import UPSTREAM
from .state import CONFIG, INGESTS, NETWORK, RECORDS, STAGING, UPSTREAMS
from .upstream import UpstreamHit, Upstreams

log = logging.getLogger("nixshard.serve")
PIECE = 1 << 20


class UpstreamFileError(CacheServerError):
    """An upstream NAR file is larger than its cap, or not the size its narinfo says."""


def download_limit(narinfo: NarInfo, max_bytes: int) -> int:
    """The most bytes of ``narinfo``'s file an ingest downloads (see the module docstring).

    Raises:
        UnsupportedCompressionError: its ``Compression`` is not supported here.
    """
    limit = min(max_compressed_size(narinfo.compression, narinfo.nar_size), max_bytes)
    return limit if narinfo.file_size is None else min(limit, narinfo.file_size)


async def stage_upstream_file(upstreams: Upstreams, hit: UpstreamHit, path: Path,
                              limit: int) -> int:
    """Download ``hit``'s NAR file to ``path``, at most ``limit`` bytes; returns its size.

    Raises:
        UpstreamFileError: Content-Length or the body passes ``limit`` (cut off
            as soon as it does), or the body is not ``FileSize`` bytes.
        UpstreamUnavailableError, TimeoutError, aiohttp.ClientError: the download failed.
        OSError: ``path`` cannot be written.
    """
    loop = asyncio.get_running_loop()
    where = f"{hit.base_url}/{hit.narinfo.url}"
    size = 0
    async with await upstreams.open_nar(hit) as resp:
        if resp.content_length is not None and resp.content_length > limit:
            raise UpstreamFileError(f"{where}: Content-Length {resp.content_length} is over "
                                    f"the {limit} bytes its narinfo allows")
        with open(path, "wb") as f:
            async for piece in resp.content.iter_chunked(PIECE):
                size += len(piece)
                if size > limit:
                    raise UpstreamFileError(f"{where}: the file is larger than the {limit} "
                                            "bytes its narinfo allows")
                await loop.run_in_executor(None, f.write, piece)
    if hit.narinfo.file_size is not None and size != hit.narinfo.file_size:
        raise UpstreamFileError(f"{where}: {size} bytes, its narinfo says FileSize "
                                f"{hit.narinfo.file_size}")
    return size


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
    try:
        limit = download_limit(hit.narinfo, upstream.max_bytes)
        await stage_upstream_file(app[UPSTREAMS], hit, staging.dir / name, limit)
        await ingest_nar(app[NETWORK], upstream.publisher, hit.narinfo, staging.dir / name)
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

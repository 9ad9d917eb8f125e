"""S3 clients side by side on shard-sized objects: obstore and aiobotocore against SeaweedFS.

Usage (from the repository root)::

    python3 benchmarks/s3_clients.py [--runs 3] [--concurrency 16] [--label after]
                                     [--out benchmarks/results.md]

One local SeaweedFS (``nixshard/seaweed.py``: ``weed server -s3`` on 127.0.0.1, signed
requests).  For each object size (16 KiB, 64 KiB, 1 MiB) and each client, from one
asyncio loop with ``concurrency`` requests in flight: PUT ``count`` objects under a
fresh prefix, GET each (whole body into ``bytes``), HEAD each, then LIST the prefix
(ListObjectsV2, pages of 1000 keys; one op = one page) ``4 * concurrency`` times.
Reported per cell, the median of ``runs`` runs: wall-clock ops/s, MB/s of object bytes
(MB = 10^6 bytes) and the client process's CPU time (user + system, ``getrusage``,
all its threads; weed is another process) per op in microseconds.  Both clients reuse
one connection pool each; every phase starts after a warm-up request.  The weed server
shares the machine's cores with the client, so ops/s is a lower bound of the client's
own ceiling; CPU per op is the figure that compares clients.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import obstore
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from obstore.store import S3Store

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.sections import commit, write_section  # noqa: E402
from nixshard.seaweed import SeaweedServer, weed_binary  # noqa: E402

SIZES = {"16 KiB": (16 << 10, 2000), "64 KiB": (64 << 10, 1000), "1 MiB": (1 << 20, 200)}
BUCKET = "bench"


class Client:
    """One S3 client's four operations on bucket :data:`BUCKET` (keys are full keys)."""

    name = ""

    async def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    async def get(self, key: str) -> bytes:
        raise NotImplementedError

    async def head(self, key: str) -> int:
        raise NotImplementedError

    async def list_pages(self, prefix: str) -> int:
        """List ``prefix`` completely; returns the number of pages (requests) read."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


class Obstore(Client):
    name = "obstore"

    def __init__(self, server: SeaweedServer, concurrency: int) -> None:
        self.store = S3Store(BUCKET, endpoint=server.endpoint, region=server.region,
                             access_key_id=server.access_key,
                             secret_access_key=server.secret_key,
                             virtual_hosted_style_request=False,
                             client_options={"allow_http": True})

    async def put(self, key: str, data: bytes) -> None:
        await obstore.put_async(self.store, key, data)

    async def get(self, key: str) -> bytes:
        found = await obstore.get_async(self.store, key)
        return bytes(await found.bytes_async())

    async def head(self, key: str) -> int:
        return int((await obstore.head_async(self.store, key))["size"])

    async def list_pages(self, prefix: str) -> int:
        keys = 0
        async for chunk in obstore.list(self.store, prefix=prefix, chunk_size=1000):
            keys += len(chunk)
        return max(1, -(-keys // 1000))  # object_store asks pages of 1000 keys


class Aiobotocore(Client):
    name = "aiobotocore"

    def __init__(self, server: SeaweedServer, concurrency: int) -> None:
        self.server = server
        self.concurrency = concurrency
        self.client: Any = None
        self._context: Any = None

    async def open(self) -> None:
        config = AioConfig(max_pool_connections=self.concurrency, retries={"max_attempts": 1},
                           s3={"addressing_style": "path"})
        self._context = get_session().create_client(
            "s3", endpoint_url=self.server.endpoint, region_name=self.server.region,
            aws_access_key_id=self.server.access_key,
            aws_secret_access_key=self.server.secret_key, config=config)
        self.client = await self._context.__aenter__()

    async def put(self, key: str, data: bytes) -> None:
        await self.client.put_object(Bucket=BUCKET, Key=key, Body=data)

    async def get(self, key: str) -> bytes:
        answer = await self.client.get_object(Bucket=BUCKET, Key=key)
        async with answer["Body"] as body:
            data: bytes = await body.read()
        return data

    async def head(self, key: str) -> int:
        return int((await self.client.head_object(Bucket=BUCKET, Key=key))["ContentLength"])

    async def list_pages(self, prefix: str) -> int:
        pages = 0
        paginator = self.client.get_paginator("list_objects_v2")
        async for _page in paginator.paginate(Bucket=BUCKET, Prefix=prefix):
            pages += 1
        return pages

    async def close(self) -> None:
        await self._context.__aexit__(None, None, None)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def phase(jobs: list[Callable[[], Awaitable[int]]], concurrency: int
                ) -> tuple[float, float, int]:
    """Run ``jobs`` with ``concurrency`` workers; (wall s, CPU s, sum of their results)."""
    queue = list(reversed(jobs))
    total = 0

    async def worker() -> None:
        nonlocal total
        while queue:
            done = await queue.pop()()  # not `total += await ...`: that reads total first
            total += done

    cpu, wall = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, cpu_seconds() - cpu, total


async def measure(client: Client, size: int, count: int, concurrency: int, tag: str
                  ) -> dict[str, tuple[float, float, float]]:
    """{op: (ops/s, MB/s, CPU µs per op)} for one client and object size."""
    prefix = f"{client.name}/{tag}/"
    payload = os.urandom(size)
    keys = [f"{prefix}{i:06d}" for i in range(count)]
    await client.put(f"{prefix}warm", payload)
    await client.get(f"{prefix}warm")

    def put(key: str) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            await client.put(key, payload)
            return 1
        return run

    def get(key: str) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            if len(await client.get(key)) != size:
                raise RuntimeError(f"short GET of {key}")
            return 1
        return run

    def head(key: str) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            await client.head(key)
            return 1
        return run

    async def listing() -> int:
        return await client.list_pages(prefix)

    lists: list[Callable[[], Awaitable[int]]] = [listing] * (4 * concurrency)
    results: dict[str, tuple[float, float, float]] = {}
    for op, jobs, moved in (("PUT", [put(k) for k in keys], size),
                            ("GET", [get(k) for k in keys], size),
                            ("HEAD", [head(k) for k in keys], 0),
                            ("LIST", lists, 0)):
        wall, cpu, ops = await phase(jobs, concurrency)
        results[op] = (ops / wall, ops * moved / wall / 1e6, cpu / ops * 1e6)
    return results


async def run_all(server: SeaweedServer, runs: int, concurrency: int
                  ) -> dict[tuple[str, str, str], list[tuple[float, float, float]]]:
    """Every (size, op, client) cell's figures, one per run."""
    cells: dict[tuple[str, str, str], list[tuple[float, float, float]]] = {}
    for run in range(runs):
        for label, (size, count) in SIZES.items():
            for make in (Obstore, Aiobotocore):
                client = make(server, concurrency)
                if isinstance(client, Aiobotocore):
                    await client.open()
                try:
                    figures = await measure(client, size, count, concurrency,
                                            f"r{run}-{size}")
                finally:
                    await client.close()
                for op, cell in figures.items():
                    cells.setdefault((label, op, client.name), []).append(cell)
                print(f"run {run + 1}, {label}, {client.name}: "
                      + ", ".join(f"{op} {v[0]:.0f}/s" for op, v in figures.items()),
                      file=sys.stderr, flush=True)
    return cells


def table(cells: dict[tuple[str, str, str], list[tuple[float, float, float]]]) -> str:
    """The markdown table: one row per (size, op), the two clients side by side."""
    names = ("obstore", "aiobotocore")
    rows = ["| size | op | " + " | ".join(f"{n} ops/s | {n} MB/s | {n} CPU µs/op"
                                          for n in names) + " |",
            "|---|---|" + "---:|" * (3 * len(names))]
    for label in SIZES:
        for op in ("PUT", "GET", "HEAD", "LIST"):
            shown = []
            for name in names:
                runs = cells[(label, op, name)]
                ops, mbs, cpu = (statistics.median(v[i] for v in runs) for i in range(3))
                shown += [f"{ops:.0f}", f"{mbs:.1f}" if mbs else "-", f"{cpu:.0f}"]
            rows.append(f"| {label} | {op} | " + " | ".join(shown) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--label", default="after")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md")
    args = parser.parse_args()
    versions = f"obstore {obstore.__version__}, aiobotocore {version('aiobotocore')}"
    with SeaweedServer(Path(tempfile.mkdtemp(prefix="nixshard-s3bench-")),
                       remove_data=True) as server:
        server.create_bucket(BUCKET)
        cells = asyncio.run(run_all(server, args.runs, args.concurrency))
    report = "\n".join([
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {versions}, "
        f"SeaweedFS {_weed_version()}; concurrency {args.concurrency}, "
        f"median of {args.runs} runs; objects per size: "
        + ", ".join(f"{label} x {count}" for label, (_, count) in SIZES.items()) + ".",
        "", table(cells)])
    print(report)
    write_section(args.out, "s3_clients.py",
                  "S3 clients on shard-sized objects (`python3 benchmarks/s3_clients.py`)",
                  "See the docstring of benchmarks/s3_clients.py for the set-up; CPU is the "
                  "client process's user + system time per op.", args.label, report)
    print(f"wrote {args.out}")


def _weed_version() -> str:
    """weed's version number ("?" when it does not say)."""
    done = subprocess.run([str(weed_binary()), "version"], capture_output=True, text=True,
                          check=False)
    words = done.stdout.split()
    return words[2] if len(words) > 2 else "?"


if __name__ == "__main__":
    main()

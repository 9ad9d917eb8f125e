"""The sections of bench.py: the data and key it needs, then push, pull, get, narinfo, rss, bytes.

Each section appends its :class:`~benchmarks.bench_results.Row` s to the run
(:class:`~benchmarks.bench_run.Bench`); see bench.py's docstring for what each
measures.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.bench_data import (
    MIB,
    add_to_store,
    edit_every_20th,
    make_big_tree,
    nar_sizes,
    real_bytes_pool,
    regular_files,
)
from benchmarks.bench_measure import (
    MB,
    Sample,
    WrkResult,
    compressed_size,
    narinfo_fields,
    run_wrk,
    timed_get,
    vm_hwm,
)
from benchmarks.bench_results import Bar, Row
from benchmarks.bench_run import Bench, remove_tree

if TYPE_CHECKING:
    from nixshard.localnet import LocalNetwork

ABSENT_HASH = "a" * 32  # 32 nix32 characters, a path nobody pushed


def build_data(bench: Bench) -> None:
    """Copy the trees, make the edited python and the big tree, ``nix-store --add`` them."""
    data = bench.work / "data"
    data.mkdir()
    env = bench.env()
    for name, src in (("gcc", "/usr/lib/gcc"), ("python", "/usr/lib/python3.11")):
        shutil.copytree(src, data / name, symlinks=True)
        bench.paths[name] = add_to_store(data / name, env)
    if bench.wants("bytes"):
        shutil.copytree(data / "python", data / "python-v2", symlinks=True)
        changed = edit_every_20th(data / "python-v2")
        bench.paths["python2"] = add_to_store(data / "python-v2", env)
        bench.note(f"python v2: {changed} of {len(regular_files(data / 'python'))} regular "
                   "files edited")
    if bench.wants("rss") and not bench.args.skip_big:
        start = time.perf_counter()
        pool = real_bytes_pool([data / "gcc", data / "python"], 96 * MIB)
        make_big_tree(data / "big", bench.args.big_mib, pool)
        bench.paths["big"] = add_to_store(data / "big", env)
        remove_tree(data / "big")
        bench.note(f"big tree ({bench.args.big_mib} MiB) made and added in "
                   f"{time.perf_counter() - start:.1f} s")
    sizes = nar_sizes(list(bench.paths.values()), env)
    for name, path in bench.paths.items():
        bench.note(f"{name}: {path} NAR {sizes[path] / MB:.1f} MB")


def generate_key(bench: Bench) -> None:
    """A signing key made by ``nix-store --generate-binary-cache-key``."""
    bench.sk = bench.work / "secret.key"
    pk = bench.work / "public.key"
    subprocess.run(["nix-store", "--generate-binary-cache-key", "nixshard-bench-1",
                    str(bench.sk), str(pk)], check=True, env=bench.env())
    bench.pk = pk.read_text().strip()


def bench_push(bench: Bench) -> None:
    """push: nixshard push into fresh nodes vs nix copy --to file:// into a fresh DIR."""
    paths = [bench.paths["gcc"], bench.paths["python"]]
    ours: list[Sample] = []
    ref: list[Sample] = []
    for run in range(bench.args.runs):
        net = bench.new_network(f"push-net-{run}")
        ours.append(bench.push(net, paths))
        bench.drop_network(net)
        dest = bench.fresh("push-filecache")
        ref.append(bench.copy_to_file(paths, dest))
        if bench.file_cache is None:
            bench.file_cache = dest  # reused as nginx's root
        else:
            remove_tree(dest)
        print(f"  push run {run + 1}: ours {ours[-1].seconds:.2f} s, "
              f"ref {ref[-1].seconds:.2f} s", flush=True)
    bench.rows.append(Row("push gcc+python, wall", "s", [s.seconds for s in ours],
                          [s.seconds for s in ref], Bar("ratio_max", 1.0)))
    bench.rows.append(Row("push gcc+python, CPU (user + system, children included)",
                          "CPU-s", [s.cpu for s in ours], [s.cpu for s in ref],
                          Bar("ratio_max", 1.3)))
    bench.rows.append(Row("push gcc+python, peak RSS", "MB", [s.rss / MB for s in ours],
                          [s.rss / MB for s in ref], Bar("ratio_max", 2.0)))


def bench_pull(bench: Bench, net: LocalNetwork) -> None:
    """pull cold/hot (fresh gateway, then again) and degraded (2 nodes down) vs nginx."""
    paths = [bench.paths["gcc"], bench.paths["python"]]
    runs = bench.args.runs
    cold, hot, degraded = [], [], []
    ref_cold, ref_hot, ref_degraded = [], [], []
    for run in range(runs):
        gateway = bench.gateway(net, f"pull-{run}")
        cold.append(bench.copy_from(gateway.url, paths).seconds)
        ref_cold.append(bench.copy_from(bench.nginx_url, paths).seconds)
        hot.append(bench.copy_from(gateway.url, paths).seconds)
        ref_hot.append(bench.copy_from(bench.nginx_url, paths).seconds)
        bench.drop_gateway(net, gateway)
        print(f"  pull run {run + 1}: cold {cold[-1]:.2f} s (ref {ref_cold[-1]:.2f}), "
              f"hot {hot[-1]:.2f} s (ref {ref_hot[-1]:.2f})", flush=True)
    down = [1, 2]
    for number in down:
        net.nodes[number - 1].stop()
    try:
        for run in range(runs):
            gateway = bench.gateway(net, f"degraded-{run}")
            degraded.append(bench.copy_from(gateway.url, paths).seconds)
            ref_degraded.append(bench.copy_from(bench.nginx_url, paths).seconds)
            bench.drop_gateway(net, gateway)
            print(f"  pull degraded run {run + 1}: {degraded[-1]:.2f} s "
                  f"(ref {ref_degraded[-1]:.2f})", flush=True)
    finally:
        for number in down:
            net.restart_node(number)
    bench.rows.append(Row("pull gcc+python cold, wall", "s", cold, ref_cold,
                          Bar("ratio_max", 1.5)))
    bench.rows.append(Row("pull gcc+python degraded (2 of 6 nodes down), wall", "s", degraded,
                          ref_degraded, Bar("ratio_max", 1.7)))
    bench.rows.append(Row("pull gcc+python hot, wall", "s", hot, ref_hot, Bar("ratio_max", 1.1)))


def bench_get(bench: Bench, net: LocalNetwork) -> None:
    """GET of the gcc .nar.zst: cold (fresh gateway) and hot (second GET) vs nginx, MB/s."""
    gcc = bench.paths["gcc"]
    ref_url = f"{bench.nginx_url}/{narinfo_fields(bench.nginx_url, gcc)['URL']}"
    cold, hot, ref_cold, ref_hot = [], [], [], []
    size = 0
    for run in range(bench.args.runs):
        gateway = bench.gateway(net, f"get-{run}")
        url = f"{gateway.url}/{narinfo_fields(gateway.url, gcc)['URL']}"
        seconds, size = timed_get(url)
        cold.append(size / MB / seconds)
        seconds, ref_size = timed_get(ref_url)
        ref_cold.append(ref_size / MB / seconds)
        seconds, size = timed_get(url)
        hot.append(size / MB / seconds)
        seconds, ref_size = timed_get(ref_url)
        ref_hot.append(ref_size / MB / seconds)
        bench.drop_gateway(net, gateway)
        print(f"  GET run {run + 1}: cold {cold[-1]:.0f} MB/s, hot {hot[-1]:.0f} MB/s, "
              f"nginx {ref_cold[-1]:.0f} / {ref_hot[-1]:.0f} MB/s", flush=True)
    bench.note(f"GET bodies: ours {size / MB:.1f} MB (.nar.zst of gcc), "
               f"nginx {ref_size / MB:.1f} MB (nix's .nar.zst)")
    bench.rows.append(Row("GET gcc NAR hot (2nd GET), body", "MB/s", hot, ref_hot,
                          Bar("ratio_min", 0.8)))
    bench.rows.append(Row("GET gcc NAR cold (fresh gateway), body", "MB/s", cold, ref_cold,
                          Bar("abs_min", 300)))


def bench_narinfo(bench: Bench, daemon_url: str, quiet_url: str) -> None:
    """wrk on narinfo hits (cycling over the pushed paths) and 404s, ours vs nginx.

    The bars are judged like for like: nginx here runs with ``access_log off``,
    so ours runs with ``--no-access-log`` (``quiet_url``); the hits of the
    default daemon (access log on) are reported on a row of their own.
    """
    hit_paths = [f"/{Path(p).name[:32]}.narinfo"
                 for p in (bench.paths["gcc"], bench.paths["python"])]
    script = bench.work / "hits.lua"
    script.write_text("local paths = {" + ", ".join(f'"{p}"' for p in hit_paths) + "}\n"
                      "local i = 0\n"
                      "request = function()\n"
                      "  i = i % #paths + 1\n"
                      "  return wrk.format(\"GET\", paths[i])\n"
                      "end\n")
    seconds = bench.args.wrk_seconds
    results: dict[str, list[WrkResult]] = {"hits": [], "ref hits": [], "404": [], "ref 404": [],
                                           "logged hits": []}
    for run in range(bench.args.runs):
        results["hits"].append(run_wrk(quiet_url, seconds, script))
        results["ref hits"].append(run_wrk(bench.nginx_url, seconds, script))
        results["logged hits"].append(run_wrk(daemon_url, seconds, script))
        results["404"].append(run_wrk(f"{quiet_url}/{ABSENT_HASH}.narinfo", seconds, None))
        results["ref 404"].append(run_wrk(f"{bench.nginx_url}/{ABSENT_HASH}.narinfo", seconds,
                                          None))
        print("  narinfo run {}: {}".format(run + 1, ", ".join(
            f"{k} {v[-1].rps:.0f}/s" for k, v in results.items())), flush=True)
    for name, runs in results.items():
        bench.note(f"wrk {name}: requests {[r.requests for r in runs]}, non-2xx/3xx "
                   f"{[r.non_2xx for r in runs]}, socket errors {[r.errors for r in runs]}")
    bench.rows.append(Row("narinfo hits (wrk -t1 -c32), no access log", "req/s",
                          [r.rps for r in results["hits"]], [r.rps for r in results["ref hits"]],
                          Bar("abs_min", 25000)))
    bench.rows.append(Row("narinfo hits, default daemon (access log on)", "req/s",
                          [r.rps for r in results["logged hits"]],
                          [r.rps for r in results["ref hits"]]))
    bench.rows.append(Row("narinfo 404s (wrk -t1 -c32), no access log", "req/s",
                          [r.rps for r in results["404"]], [r.rps for r in results["ref 404"]],
                          Bar("abs_min", 25000)))


def bench_rss(bench: Bench) -> None:
    """Peak RSS moving one NAR: uploader (push of that path alone) and a fresh gateway."""
    names = ["gcc"] + (["big"] if "big" in bench.paths else [])
    net = bench.new_network("rss-net")
    try:
        for name in names:
            path = bench.paths[name]
            ours = bench.push(net, [path])
            dest = bench.fresh("rss-filecache")
            ref = bench.copy_to_file([path], dest)
            remove_tree(dest)
            gateway = bench.gateway(net, f"rss-{name}")
            url = f"{gateway.url}/{narinfo_fields(gateway.url, path)['URL']}"
            seconds, size = timed_get(url)
            assert gateway.proc is not None
            daemon_rss = vm_hwm(gateway.proc.pid)
            bench.drop_gateway(net, gateway)
            label = "1 GiB" if name == "big" and bench.args.big_mib == 1024 else name
            if name == "big" and bench.args.big_mib != 1024:
                label = f"{bench.args.big_mib} MiB"
            bench.note(f"{name}: push {ours.seconds:.1f} s (nix copy --to file:// "
                       f"{ref.seconds:.1f} s); cold GET {size / MB:.0f} MB in {seconds:.1f} s")
            bench.rows.append(Row(f"uploader peak RSS, {label} NAR", "MB", [ours.rss / MB],
                                  [ref.rss / MB],
                                  Bar("abs_max", 250) if name == "big" else None))
            bench.rows.append(Row(f"daemon peak RSS after a cold GET, {label} NAR", "MB",
                                  [daemon_rss / MB],
                                  bar=Bar("abs_max", 150) if name == "big" else None))
    finally:
        bench.drop_network(net)


def node_bytes(net: LocalNetwork, sub: str) -> tuple[int, int]:
    """Total st_size and allocated bytes (st_blocks * 512) under each node's ``sub`` dir."""
    size = blocks = 0
    for number in range(1, len(net.nodes) + 1):
        for path in (net.node_dir(number) / sub).rglob("*"):
            if path.is_file():
                st = path.stat()
                size += st.st_size
                blocks += st.st_blocks * 512
    return size, blocks


def distinct_chunk_bytes(net: LocalNetwork, paths: Sequence[str]) -> int | None:
    """Compressed bytes of the distinct chunks in the paths' manifests (records on the nodes).

    None when a record cannot be found or opened (the node layout changed).
    """
    from storage_network.errors import RecordError
    from storage_network.wire.record import open_record

    assert net.network is not None
    chunks: dict[bytes, int] = {}
    for path in paths:
        key = Path(path).name[:32]
        copies = [net.node_dir(i) / "records" / key for i in range(1, len(net.nodes) + 1)]
        found = [c for c in copies if c.is_file()]
        if not found:
            return None
        try:
            record = open_record(net.network.publishers, key, found[0].read_bytes())
        except RecordError:
            return None
        chunks.update((c.chunk_id, c.stored_size) for c in record.manifest.chunks)
    return sum(chunks.values())


def bench_bytes(bench: Bench, net: LocalNetwork, daemon_url: str) -> None:
    """Bytes on the nodes after gcc+python (fresh network) vs n/k x compressed; the v2 delta."""
    assert net.network is not None
    n, k = net.network.n, net.network.k
    paths = [bench.paths["gcc"], bench.paths["python"]]
    nar = sum(nar_sizes(paths, bench.env()).values())
    compressed = sum(compressed_size(daemon_url, p) for p in paths)
    nix_zst = sum(compressed_size(bench.nginx_url, p) for p in paths)
    shards, shards_alloc = node_bytes(net, "shards")
    records, records_alloc = node_bytes(net, "records")
    bench.note(f"gcc+python: NAR {nar / MB:.1f} MB, compressed {compressed / MB:.1f} MB "
               f"(nix zstd {nix_zst / MB:.1f} MB), shards {shards / MB:.1f} MB "
               f"(allocated {shards_alloc / MB:.1f}), records {records / 1e3:.1f} kB "
               f"(allocated {records_alloc / 1e3:.1f} kB), n/k = {n}/{k}")
    bench.rows.append(Row(f"shard bytes on nodes vs n/k x compressed (gcc+python, {k}-of-{n})",
                          "MB", [shards / MB], [n / k * compressed / MB], Bar("ratio_max", 1.02)))
    distinct = distinct_chunk_bytes(net, paths)
    if distinct is not None:
        bench.note(f"distinct chunks' compressed bytes {distinct / MB:.1f} MB (a chunk that "
                   "repeats within or across NARs is stored once)")
        bench.rows.append(Row("shard bytes on nodes vs n/k x compressed distinct chunks", "MB",
                              [shards / MB], [n / k * distinct / MB]))
    bench.rows.append(Row("record bytes on nodes (gcc+python)", "kB", [records / 1e3]))
    bench.rows.append(Row("compressed NAR bytes vs nix copy zstd (gcc+python)", "MB",
                          [compressed / MB], [nix_zst / MB]))
    v2 = bench.paths["python2"]
    bench.push(net, [v2])
    added = (node_bytes(net, "shards")[0] + node_bytes(net, "records")[0]) - (shards + records)
    v2_nar = nar_sizes([v2], bench.env())[v2]
    v2_compressed = compressed_size(daemon_url, v2)
    bench.note(f"python v2: NAR {v2_nar / MB:.1f} MB, compressed {v2_compressed / MB:.1f} MB, "
               f"bytes added on nodes {added / MB:.2f} MB = {added / v2_nar:.1%} of its NAR, "
               f"{added / (n / k * v2_compressed):.1%} of n/k x its compressed size")
    bench.rows.append(Row("python v2 (5% files edited): bytes added on nodes vs n/k x "
                          "compressed", "MB", [added / MB], [n / k * v2_compressed / MB]))

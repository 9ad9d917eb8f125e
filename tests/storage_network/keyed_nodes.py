"""A network of real node processes that have keys (``nixshard node --key``): each
node id derives from its key and the network entry names the key, as a network map
does (:mod:`storage_network.network_map`); and an impostor answering at a node's URL."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from nacl.signing import SigningKey

from nixshard.localnet import NodeProcess, free_port, new_publisher, start_all, stop_all
from storage_network.config import Network, NodeInfo, init_network
from storage_network.wire.node_answer_auth import sign_answer
from storage_network.wire.proofs import encode_answer
from storage_network.wire.write_auth import Publisher
from storage_node.identity import NodeIdentity
from tests.support.network import SMALL_CHUNKS, K, M
from tests.support.servers import serve_app


@dataclass
class KeyedNodes:
    """Started nodes with keys, and their network (entries name each node's key)."""

    root: Path
    publisher: Publisher
    identities: list[NodeIdentity]
    network: Network
    nodes: list[NodeProcess] = field(default_factory=list)

    def process(self, index: int, identity: NodeIdentity | None = None,
                data_dir: Path | None = None) -> NodeProcess:
        """A (not started) node process at node ``index``'s port, with ``identity``'s
        key (default: the node's own) and ``data_dir`` (default: the node's own)."""
        identity = identity or self.identities[index]
        key = self.root / f"{identity.node_id}.key"
        if not key.exists():
            key.write_text(identity.secret_text() + "\n")
        url = self.network.nodes[index].url
        return NodeProcess(data_dir or self.root / self.identities[index].node_id,
                           [self.publisher.public.text()], identity.node_id,
                           port=int(url.rsplit(":", 1)[1]), extra_args=["--key", str(key)])

    def replace(self, index: int, process: NodeProcess) -> None:
        """Stop node ``index`` and start ``process`` in its place (same URL)."""
        self.nodes[index].stop()
        self.nodes[index] = process
        process.start().wait_ready()

    def without_keys(self) -> Network:
        """The same network with no node key named (a legacy network file)."""
        return dataclasses.replace(self.network, nodes=tuple(
            dataclasses.replace(n, public_key="") for n in self.network.nodes))


@contextmanager
def keyed_nodes(root: Path, count: int = 6) -> Iterator[KeyedNodes]:
    """``count`` started nodes with fresh keys (k=4, m=2, small chunks); stopped on exit."""
    publisher = new_publisher("sn-keyed-1")[0]
    identities = [NodeIdentity(SigningKey.generate()) for _ in range(count)]
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(count)]
    plain = init_network(urls, K, M, [publisher.public], chunking=SMALL_CHUNKS)
    network = dataclasses.replace(plain, nodes=tuple(
        NodeInfo(ident.node_id, url, public_key=ident.public_key)
        for ident, url in zip(identities, urls, strict=True))).validate()
    net = KeyedNodes(root, publisher, identities, network)
    net.nodes = [net.process(i) for i in range(count)]
    try:
        start_all(net.nodes)
        yield net
    finally:
        stop_all(net.nodes)


def copy_data(net: KeyedNodes, index: int, to: Path) -> Path:
    """A copy of node ``index``'s data directory at ``to`` (without its lock)."""
    shutil.copytree(net.root / net.identities[index].node_id, to,
                    ignore=shutil.ignore_patterns("*.lock", "lock"))
    return to


@asynccontextmanager
async def impostor_server(port: int, node_id: str, key: SigningKey) -> AsyncIterator[None]:
    """A small aiohttp server on ``port`` posing as node ``node_id``: it claims every
    shard asked about, says every record is absent, answers every proof "absent", and
    signs all of it with ``key`` (not the node's key)."""

    async def signed(request: web.Request, path: str, status: int,
                     answer: bytes) -> web.Response:
        body = await request.read()
        headers = sign_answer(key, node_id, request.method, path,
                              hashlib.sha256(body).digest(), request.headers, status, answer)
        return web.Response(status=status, body=answer, headers=headers)

    async def has(request: web.Request) -> web.Response:
        ids = json.loads(await request.read())["ids"]
        return await signed(request, "/shards/has", 200,
                            json.dumps({"present": ids}).encode())

    async def record(request: web.Request) -> web.Response:
        key_part = request.match_info["key"]
        return await signed(request, f"/records/{key_part}", 404,
                            f"error: no record {key_part}".encode())

    async def proofs(request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        answer = encode_answer(bytes.fromhex(doc["nonce"]), [(i, None) for i in doc["ids"]])
        return await signed(request, "/proofs", 200, answer)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node_id": node_id})

    app = web.Application()
    app.router.add_post("/shards/has", has)
    app.router.add_get("/records/{key}", record)
    app.router.add_post("/proofs", proofs)
    app.router.add_get("/healthz", healthz)
    async with serve_app(app, port):
        yield

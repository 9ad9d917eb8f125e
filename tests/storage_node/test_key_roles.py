"""Key roles (docs/keys.md): publishers write, maintainers also delete.

In-process nodes check the rules request by request; real node processes on a
network file with ``maintainers`` check what a push key, gc and a key rotation
see; a bucket node checks the client-side refusal.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from nixshard.localnet import NodeProcess, free_port, new_publisher, start_all, stop_all
from nixshard.seaweed import SeaweedServer
from storage_network.client import NetworkClient
from storage_network.config import (
    LEGACY_ROLES_NOTE,
    ChunkingParams,
    Network,
    NodeInfo,
    init_network,
    parse_network,
    write_network,
)
from storage_network.errors import NetworkFileError, NodeError, NodeStatusError, NotFoundError
from storage_network.nodes.s3 import S3NodeStore
from storage_network.read.record_lookup import fetch_record
from storage_network.upkeep.gc import collect_garbage
from storage_network.wire.manifest import Manifest
from storage_network.wire.record import open_record, seal_tombstone
from storage_network.wire.stripe import shard_id
from storage_network.wire.write_auth import Publisher
from storage_network.write.publish import publish_record, store_payload
from storage_node.app import create_app
from storage_node.cli import node_command
from storage_node.config import NodeConfig
from storage_node.errors import ConfigError
from tests.support.reads import read_back
from tests.support.records import payload, record_key

from .samples import record, signed_headers, stripe, tombstone

ROLE_MESSAGE = "lacks the maintainer role"


@pytest.fixture(scope="module")
def pusher() -> Publisher:
    """A publisher key without the maintainer role (what CI pushes with)."""
    return new_publisher("ci-push-1")[0]


@pytest.fixture(scope="module")
def maintainer() -> Publisher:
    """A maintainer key (what gc and repair sign with)."""
    return new_publisher("ops-maint-1")[0]


def keys(*publishers: Publisher) -> dict[str, object]:
    return {p.name: p.public for p in publishers}


@pytest.fixture
async def node(tmp_path: Path, pusher: Publisher, maintainer: Publisher
               ) -> AsyncIterator[TestClient]:
    """An in-process node accepting both keys, ``maintainer`` as its only maintainer."""
    config = NodeConfig(tmp_path / "data", "node-1",
                        {pusher.name: pusher.public, maintainer.name: maintainer.public},
                        maintainers=frozenset({maintainer.name}))
    async with TestClient(TestServer(create_app(config))) as client:
        yield client


async def put(client: TestClient, signer: Publisher, path: str, body: bytes) -> int:
    resp = await client.put(path, data=body, headers=signed_headers(signer, "PUT", path, body))
    return resp.status


async def delete(client: TestClient, signer: Publisher, path: str) -> tuple[int, str]:
    resp = await client.delete(path, headers=signed_headers(signer, "DELETE", path, b""))
    return resp.status, await resp.text()


# --- the node, request by request ----------------------------------------------------------


async def test_a_push_key_may_write_shards_but_not_delete_them(
        node: TestClient, pusher: Publisher, maintainer: Publisher) -> None:
    (sid, body), *_ = stripe()
    assert await put(node, pusher, f"/shards/{sid}", body) == 201
    path = f"/shards/{sid}?before={time.time() + 60:.3f}"
    status, text = await delete(node, pusher, path)
    assert status == 403, text
    assert ROLE_MESSAGE in text and repr(pusher.name) in text
    assert (await node.get(f"/shards/{sid}")).status == 200
    assert (await delete(node, maintainer, path))[0] == 204
    assert (await node.get(f"/shards/{sid}")).status == 404


async def test_a_push_key_may_write_records_but_not_delete_them(
        node: TestClient, pusher: Publisher, maintainer: Publisher) -> None:
    key = record_key(1)
    data = record(pusher, key)
    assert await put(node, pusher, f"/records/{key}", data) == 201
    path = f"/records/{key}?sha256={hashlib.sha256(data).hexdigest()}"
    status, text = await delete(node, pusher, path)
    assert status == 403 and ROLE_MESSAGE in text, text
    assert await (await node.get(f"/records/{key}")).read() == data
    assert (await delete(node, maintainer, path))[0] == 204


async def test_a_tombstone_needs_a_maintainer_to_seal_or_send_it(
        node: TestClient, pusher: Publisher, maintainer: Publisher) -> None:
    key, other = record_key(2), record_key(3)
    for k in (key, other):
        assert await put(node, pusher, f"/records/{k}",
                         record(pusher, k, created=int(time.time()) - 10)) == 201
    held = await (await node.get(f"/records/{key}")).read()
    # sealed and sent by the push key: refused, the record stays
    stone = tombstone(pusher, key)
    resp = await node.put(f"/records/{key}", data=stone,
                          headers=signed_headers(pusher, "PUT", f"/records/{key}", stone))
    assert resp.status == 403 and ROLE_MESSAGE in await resp.text(), await resp.text()
    assert await (await node.get(f"/records/{key}")).read() == held
    # a maintainer's tombstone, copied by the push key (read repair): stored
    assert await put(node, pusher, f"/records/{key}", tombstone(maintainer, key)) == 200
    # any tombstone, copied by a maintainer (repair of one sealed before roles): stored
    assert await put(node, maintainer, f"/records/{other}", tombstone(pusher, other)) == 200


async def test_a_maintainer_may_write_what_repair_copies(
        node: TestClient, pusher: Publisher, maintainer: Publisher) -> None:
    (sid, body), *_ = stripe()
    assert await put(node, maintainer, f"/shards/{sid}", body) == 201
    key = record_key(4)
    assert await put(node, maintainer, f"/records/{key}", record(pusher, key)) == 201


async def test_without_maintainers_every_publisher_may_delete(
        tmp_path: Path, pusher: Publisher) -> None:
    config = NodeConfig(tmp_path / "legacy", "node-1", {pusher.name: pusher.public})
    async with TestClient(TestServer(create_app(config))) as client:
        (sid, body), *_ = stripe()
        assert await put(client, pusher, f"/shards/{sid}", body) == 201
        path = f"/shards/{sid}?before={time.time() + 60:.3f}"
        assert (await delete(client, pusher, path))[0] == 204
        key = record_key(5)
        assert await put(client, pusher, f"/records/{key}", record(pusher, key, created=1)) == 201
        assert await put(client, pusher, f"/records/{key}", tombstone(pusher, key)) == 200


def test_node_config_refuses_a_maintainer_without_a_key(tmp_path: Path,
                                                         pusher: Publisher) -> None:
    config = NodeConfig(tmp_path, "node-1", {pusher.name: pusher.public},
                        maintainers=frozenset({"nobody-1"}))
    with pytest.raises(ConfigError, match=r"maintainers \['nobody-1'\] are not among"):
        config.validate()


def test_node_refuses_a_malformed_maintainer_key(tmp_path: Path, pusher: Publisher) -> None:
    res = CliRunner().invoke(node_command, [
        "--data", str(tmp_path / "d"), "--listen", f"127.0.0.1:{free_port()}",
        "--node-id", "node-1", "--accept-publisher", pusher.public.text(),
        "--accept-maintainer", "ops-1:notbase64!"])
    assert res.exit_code == 2 and "--accept-maintainer" in res.output, res.output


# --- the network file -------------------------------------------------------------------------


def network_doc(publishers: Sequence[str], maintainers: Sequence[str] | None = None
                ) -> dict[str, object]:
    doc: dict[str, object] = {"k": 1, "m": 0, "publishers": list(publishers),
                              "nodes": [{"id": "node-1", "url": "http://127.0.0.1:9001"}]}
    if maintainers is not None:
        doc["maintainers"] = list(maintainers)
    return doc


def test_the_network_file_gives_roles(pusher: Publisher, maintainer: Publisher) -> None:
    net = parse_network(network_doc([pusher.public.text()], [maintainer.public.text()]))
    assert set(net.publishers) == {pusher.name, maintainer.name}  # a maintainer may write
    assert net.maintainers == frozenset({maintainer.name})
    assert not net.publishers[pusher.name].may_delete and not net.may_delete(pusher.name)
    assert net.publishers[maintainer.name].may_delete and net.may_delete(maintainer.name)
    assert not net.may_delete("unknown-1")
    assert net.roles_note() is None
    # readers accept the maintainer's tombstones with the network's keys
    key = record_key(6)
    opened = open_record(net.publishers, key,
                         seal_tombstone(maintainer, key, "isa_l_rs_cauchy", 1, 0))
    assert opened.tombstone and opened.publisher.may_delete


def test_a_file_without_maintainers_lets_every_publisher_delete(pusher: Publisher) -> None:
    net = parse_network(network_doc([pusher.public.text()]))
    assert net.maintainers is None and net.may_delete(pusher.name)
    assert net.roles_note() == LEGACY_ROLES_NOTE
    assert "maintainers" not in net.to_toml()


def test_roles_survive_writing_the_file(pusher: Publisher, maintainer: Publisher) -> None:
    # a key listed under both is a maintainer, written once
    doc = network_doc([pusher.public.text(), maintainer.public.text()],
                      [maintainer.public.text()])
    net = parse_network(doc)
    toml = net.to_toml()
    assert toml["publishers"] == [pusher.public.text()]
    assert toml["maintainers"] == [maintainer.public.text()]
    assert parse_network(toml) == net
    made = init_network(["http://127.0.0.1:9001"], 1, 0, [pusher.public],
                        maintainers=[maintainer.public])
    assert made.publishers == net.publishers and made.maintainers == net.maintainers


@pytest.mark.parametrize("maintainers, message", [
    ([], "maintainers = \\[\\] lists no key"),
    (["ops-1:@@@"], "maintainers: key 'ops-1': invalid base64"),
    ([7], "maintainers: each key must be a string"),
])
def test_bad_maintainers_are_refused(pusher: Publisher, maintainers: list[object],
                                     message: str) -> None:
    doc = network_doc([pusher.public.text()])
    doc["maintainers"] = maintainers
    with pytest.raises(NetworkFileError, match=message):
        parse_network(doc)


def test_one_name_with_two_keys_is_refused(pusher: Publisher) -> None:
    impostor = Publisher(pusher.name, new_publisher(pusher.name)[0].signing_key)
    with pytest.raises(NetworkFileError, match=f"key name '{pusher.name}' is listed twice"):
        parse_network(network_doc([pusher.public.text()], [impostor.public.text()]))
    doc = network_doc([pusher.public.text()])
    doc["maintainers"] = "not a list"
    with pytest.raises(NetworkFileError, match="'maintainers' must be a list"):
        parse_network(doc)


# --- real node processes on a network file with maintainers -----------------------------------

K, M = 2, 1
SMALL = ChunkingParams(min_size=4096, avg_size=16384, max_size=65536)


class RoleNet:
    """Four node processes started with ``--network FILE`` (so they take their keys and
    roles from the file, as in production) and that file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "network.toml"
        self.nodes = [NodeProcess(root / f"node-{i}", [], f"node-{i}", free_port(),
                                  ["--network", str(self.file)]) for i in range(1, 5)]
        self.network: Network | None = None

    def write(self, publishers: Sequence[Publisher],
              maintainers: Sequence[Publisher] | None) -> Network:
        """Write the network file with these keys; the nodes see it once (re)started."""
        self.network = init_network(
            [n.url for n in self.nodes], K, M, [p.public for p in publishers],
            maintainers=None if maintainers is None else [p.public for p in maintainers],
            chunking=SMALL)
        write_network(self.network, self.file)
        return self.network

    def restart(self) -> None:
        """Stop every node (if running) and start them again on the same ports and data."""
        stop_all(self.nodes)
        start_all(self.nodes)

    def client(self) -> NetworkClient:
        assert self.network is not None
        return NetworkClient(self.network, timeout=10.0)


@pytest.fixture
def role_net(tmp_path: Path) -> Iterator[RoleNet]:
    net = RoleNet(tmp_path)
    try:
        yield net
    finally:
        stop_all(net.nodes)


async def push(net: NetworkClient, publisher: Publisher, seed: int
               ) -> tuple[str, bytes, Manifest]:
    data, key = payload(9000 + seed, 60_000), record_key(9000 + seed)
    manifest, stats = await store_payload(net, publisher, [data])
    await publish_record(net, publisher, key, b"meta", manifest, touched_at=stats.touched_at)
    return key, data, manifest


async def held_shards(net: NetworkClient) -> set[str]:
    return {s.id for node in net.nodes.values() for s in await node.list_shards()}


async def test_a_push_key_cannot_delete_and_gc_with_the_maintainer_key_can(
        role_net: RoleNet, pusher: Publisher, maintainer: Publisher) -> None:
    role_net.write([pusher], [maintainer])
    role_net.restart()
    for proc in role_net.nodes:
        assert f"maintainers (may delete): {maintainer.name}" in proc.log_text()
        assert "no maintainer key listed" not in proc.log_text()
    async with role_net.client() as net:
        key, data, manifest = await push(net, pusher, 1)
        sid = shard_id(manifest.chunks[0].root, 0)
        holders = [node for node in net.nodes.values()
                   if sid in {s.id for s in await node.list_shards()}]

        with pytest.raises(NodeStatusError, match=ROLE_MESSAGE) as refused:
            await holders[0].delete_shard(sid, time.time() + 60, pusher)
        assert refused.value.status == 403
        stone = seal_tombstone(pusher, key, manifest.codec, manifest.k, manifest.m)
        arbiter = net.nodes[role_net.nodes[0].node_id]
        with pytest.raises(NodeStatusError, match=ROLE_MESSAGE) as refused:
            await arbiter.put_record(key, stone, pusher)
        assert refused.value.status == 403

        # gc signed by the push key expires nothing: every tombstone write is refused
        await collect_garbage(net, pusher, max_age=0.0, max_idle=None, grace=0.0,
                              dry_run=False)
        assert await read_back(net, (await fetch_record(net, key)).manifest) == data

        shards = {shard_id(c.root, i) for c in manifest.chunks for i in range(manifest.n)}
        assert shards <= await held_shards(net)
        await collect_garbage(net, maintainer, max_age=0.0, max_idle=None, grace=0.0,
                              dry_run=False)
        with pytest.raises(NotFoundError):
            await fetch_record(net, key)
        assert not shards & await held_shards(net)


async def test_rotating_the_publisher_and_the_maintainer_keys(
        role_net: RoleNet, pusher: Publisher, maintainer: Publisher) -> None:
    new_pusher, new_maintainer = new_publisher("ci-push-2")[0], new_publisher("ops-maint-2")[0]
    role_net.write([pusher], [maintainer])
    role_net.restart()
    async with role_net.client() as net:
        old_key, old_data, _ = await push(net, pusher, 2)
        gone, _, manifest = await push(net, pusher, 3)
        created = (await fetch_record(net, gone)).created + 1  # newer than the record
        stone = seal_tombstone(maintainer, gone, manifest.codec, manifest.k, manifest.m,
                               created)
        for node in net.nodes.values():  # the old maintainer deletes one path
            await node.put_record(gone, stone, maintainer)
        with pytest.raises(NotFoundError):
            await fetch_record(net, gone)

    # 1. the publisher key: add the new one; nodes read the file when they start
    role_net.write([pusher, new_pusher], [maintainer])
    async with role_net.client() as net:
        with pytest.raises(NodeError, match="is not accepted here"):
            await push(net, new_pusher, 4)  # the nodes still run with the old file
    role_net.restart()
    async with role_net.client() as net:
        new_key, new_data, _ = await push(net, new_pusher, 5)
        old, new = await fetch_record(net, old_key), await fetch_record(net, new_key)
        assert (old.publisher.name, new.publisher.name) == (pusher.name, new_pusher.name)
        assert await read_back(net, old.manifest) == old_data
        assert await read_back(net, new.manifest) == new_data

    # 2. the maintainer key: the new one gets the role, the old one moves to publishers
    #    (its signatures, the tombstone above included, stay valid; it may not delete)
    role_net.write([pusher, new_pusher, maintainer], [new_maintainer])
    role_net.restart()
    async with role_net.client() as net:
        node = next(iter(net.nodes.values()))
        sid = (await node.list_shards())[0].id
        with pytest.raises(NodeStatusError, match=ROLE_MESSAGE):
            await node.delete_shard(sid, time.time() + 60, maintainer)
        with pytest.raises(NotFoundError):
            await fetch_record(net, gone)
        assert await read_back(net, (await fetch_record(net, old_key)).manifest) == old_data
        await collect_garbage(net, new_maintainer, max_age=0.0, max_idle=None, grace=0.0,
                              dry_run=False)
        for key in (old_key, new_key):
            with pytest.raises(NotFoundError):
                await fetch_record(net, key)
        assert not await held_shards(net)  # every record went, so did every shard


async def test_records_by_a_dropped_publisher_key_stop_verifying(
        role_net: RoleNet, pusher: Publisher, maintainer: Publisher) -> None:
    new_pusher = new_publisher("ci-push-3")[0]
    role_net.write([pusher, new_pusher], [maintainer])
    role_net.restart()
    async with role_net.client() as net:
        old_key, _, _ = await push(net, pusher, 5)
        new_key, new_data, _ = await push(net, new_pusher, 6)
    role_net.write([new_pusher], [maintainer])  # the old key is no longer listed
    role_net.restart()
    async with role_net.client() as net:
        with pytest.raises(NotFoundError):
            await fetch_record(net, old_key)
        assert await read_back(net, (await fetch_record(net, new_key)).manifest) == new_data


def test_a_node_without_maintainers_says_so_once_and_lets_publishers_delete(
        tmp_path: Path, pusher: Publisher) -> None:
    with NodeProcess(tmp_path / "node-1", [pusher.public.text()]) as proc:
        (sid, body), *_ = stripe()
        path = f"/shards/{sid}"
        put_resp = httpx.put(proc.url + path, content=body,
                             headers=signed_headers(pusher, "PUT", path, body))
        assert put_resp.status_code == 201, put_resp.text
        gone = f"{path}?before={time.time() + 60:.3f}"
        resp = httpx.delete(proc.url + gone, headers=signed_headers(pusher, "DELETE", gone, b""))
        assert resp.status_code == 204, resp.text
        assert proc.log_text().count("no maintainer key listed") == 1


# --- a bucket node: the client refuses ------------------------------------------------------


async def test_a_bucket_client_refuses_deletes_by_a_push_key(
        seaweed_server: SeaweedServer, monkeypatch: pytest.MonkeyPatch,
        pusher: Publisher, maintainer: Publisher) -> None:
    for name, value in seaweed_server.aws_env().items():
        monkeypatch.setenv(name, value)
    seaweed_server.create_bucket("key-roles")
    url = seaweed_server.node_url("key-roles", f"t{time.time_ns()}")
    network = init_network([url], 1, 0, [pusher.public], maintainers=[maintainer.public])
    store = S3NodeStore(NodeInfo("node-1", url), publishers=network.publishers)
    try:
        (sid, body), *_ = stripe()
        assert await store.put_shard(sid, body, pusher)
        with pytest.raises(NodeStatusError, match=ROLE_MESSAGE) as refused:
            await store.delete_shard(sid, time.time() + 60, pusher)
        assert refused.value.status == 403 and "a bucket cannot check key roles" in str(
            refused.value)
        key = record_key(7)
        data = record(pusher, key, created=int(time.time()) - 10)
        assert await store.put_record(key, data, pusher) == 201
        with pytest.raises(NodeStatusError, match=ROLE_MESSAGE):
            await store.delete_record(key, hashlib.sha256(data).hexdigest(), pusher)
        with pytest.raises(NodeStatusError, match=ROLE_MESSAGE):
            await store.put_record(key, tombstone(pusher, key), pusher)
        assert await store.get_record(key) == data
        stranger = new_publisher("stranger-9")[0]
        with pytest.raises(NodeStatusError, match="is not one of the network's keys"):
            await store.delete_shard(sid, time.time() + 60, stranger)
        # the maintainer deletes as before
        assert await store.delete_shard(sid, time.time() + 60, maintainer)
        assert await store.put_record(key, tombstone(maintainer, key), maintainer) == 200
    finally:
        await store.close()

"""Quotas through the write path, against real node processes that enforce them: a
publisher pushes until a node refuses (402), the push stops with QuotaExceededError,
no record is written for the refused payload, earlier ones stay readable, no node is
held to blame, and what nodes charge survives a restart."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nixshard.localnet import LocalNetwork, new_publisher
from nixshard.status_cli import status_command
from storage_network.client import NetworkClient
from storage_network.errors import NotFoundError, QuotaExceededError
from storage_network.nodes.health import Standing
from storage_network.read.record_lookup import fetch_record
from storage_network.wire.write_auth import Publisher
from storage_network.write.publish import publish_record, store_payload
from tests.storage_network.quota_net import node_usage, quota_network
from tests.support.reads import read_back
from tests.support.records import payload, record_key

QUOTA = 60_000
"""Bytes per node: two or three 60 kB payloads (each node holds a quarter of each)."""


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """Six nodes giving their publisher a quota of :data:`QUOTA` bytes each."""
    publisher = new_publisher("quota-push-1")[0]
    with quota_network(tmp_path_factory.mktemp("quota-net"), publisher, QUOTA) as local:
        yield local


async def push(net: NetworkClient, publisher: Publisher, seed: int) -> tuple[str, bytes]:
    data = payload(700 + seed, 60_000)
    key = record_key(700 + seed)
    manifest, stats = await store_payload(net, publisher, [data])
    await publish_record(net, publisher, key, b"meta", manifest, touched_at=stats.touched_at)
    return key, data


async def test_over_quota_stops_the_push_and_writes_no_record(
        net: NetworkClient, local: LocalNetwork, publisher: Publisher) -> None:
    pushed: list[tuple[str, bytes]] = []
    refusal: QuotaExceededError | None = None
    for seed in range(10):
        try:
            pushed.append(await push(net, publisher, seed))
        except QuotaExceededError as exc:
            refusal, refused_key = exc, record_key(700 + seed)
            break
    assert refusal is not None, "the nodes never refused"
    assert pushed, "the first payload already over quota: QUOTA is too small for the test"
    assert re.fullmatch(rf"quota exceeded: publisher {publisher.name} keeps \d+ bytes on node "
                        rf"node-\d, its quota is {QUOTA} bytes; the write needs \d+ more",
                        str(refusal)), str(refusal)
    with pytest.raises(NotFoundError):
        await fetch_record(net, refused_key)
    for key, data in pushed:
        assert await read_back(net, (await fetch_record(net, key)).manifest) == data
    for node in local.nodes:
        assert node_usage(local, node.node_id).get(publisher.name, 0) <= QUOTA
        # a quota refusal is no failure of the node
        assert net.health.standing(node.node_id) is Standing.GOOD


async def test_usage_survives_a_node_restart(net: NetworkClient, local: LocalNetwork,
                                             publisher: Publisher) -> None:
    if not node_usage(local, "node-1"):  # run alone: charge something first
        await push(net, publisher, 50)
    before = node_usage(local, "node-1")
    assert before.get(publisher.name, 0) > 0
    local.restart_node(1, extra=["--network", str(local.network_file)])
    assert node_usage(local, "node-1") == before


def test_status_shows_usage_per_publisher_against_its_quota(local: LocalNetwork,
                                                            publisher: Publisher,
                                                            tmp_path: Path) -> None:
    scores = ["--scores", str(tmp_path / "scores.json")]
    result = CliRunner().invoke(status_command, ["--network", str(local.network_file),
                                                 "--json", *scores])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    charged = {row["id"]: row["usage"].get(publisher.name, 0) for row in doc["nodes"]}
    assert charged == {n.node_id: node_usage(local, n.node_id).get(publisher.name, 0)
                       for n in local.nodes}
    assert max(charged.values()) > 0
    result = CliRunner().invoke(status_command, ["--network", str(local.network_file),
                                                 *scores])
    assert result.exit_code == 0, result.output
    most = max(charged.values())
    line = next(x for x in result.output.splitlines() if x.startswith(publisher.name))
    assert line.split()[:3] == [publisher.name, str(QUOTA), str(most)]
    assert line.split()[-1] == str(sum(charged.values()))

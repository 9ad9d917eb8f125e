"""`nixshard audit --propose-map`: a node whose own (signed) answers show lost shards is
drained in a draft of the next epoch (real keyed node processes)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

from click.testing import CliRunner

from nixshard.cli import main
from storage_network.client import NetworkClient
from storage_network.config import write_network
from storage_network.network_map import SignedMap, document_from_network, load_signed_map
from storage_network.write.publish import publish_record, store_payload
from tests.storage_network.keyed_nodes import keyed_nodes
from tests.support.records import payload, record_key

from .maps import maintainers, sign


def test_a_node_that_lost_its_shards_is_drained_in_the_draft(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    with keyed_nodes(tmp_path / "net", count=7) as keyed:
        keys = maintainers("ops", 3)
        network = dataclasses.replace(
            keyed.network, maintainers=frozenset(k.name for k in keys),
            publishers={**keyed.network.publishers, **{k.name: k.public for k in keys}})
        epoch1 = sign(document_from_network(network, 2), keys[0], keys[1])
        map_file = tmp_path / "epoch1.json"
        map_file.write_bytes(epoch1.to_bytes())

        async def push() -> None:
            async with NetworkClient(network) as net:
                for seed in (1, 2):
                    manifest, _ = await store_payload(net, keyed.publisher,
                                                      [payload(seed, 150_000)])
                    await publish_record(net, keyed.publisher, record_key(seed), b"meta",
                                         manifest)

        asyncio.run(push())
        victim = network.nodes[0].id
        shutil.rmtree(keyed.root / victim / "shards")
        (keyed.root / victim / "shards").mkdir()
        draft = tmp_path / "epoch2.json"
        scores = tmp_path / "scores.json"
        res = CliRunner().invoke(main, ["audit", "--network", str(map_file), "--scores",
                                        str(scores), "--propose-map", str(draft)])
        assert res.exit_code == 1, res.output  # flagged
        assert f"draining {victim}" in res.output
        proposed: SignedMap = load_signed_map(draft)
        assert proposed.epoch == 2 and not proposed.signatures
        states = {n.id: n.state for n in proposed.document.nodes}
        assert states[victim] == "draining"
        assert all(state == "active" for node_id, state in states.items() if node_id != victim)

        # status names the epoch it works from
        res = CliRunner().invoke(main, ["status", "--network", str(map_file), "--scores",
                                        str(scores), "--json"])
        assert res.exit_code == 0, res.output
        assert '"epoch": 1' in res.output
        res = CliRunner().invoke(main, ["status", "--network", str(map_file), "--scores",
                                        str(scores)])
        assert any(line.startswith("network map epoch 1: ") for line in res.output.splitlines())

        # a network file has no epochs to propose
        plain = tmp_path / "network.toml"
        write_network(network, plain)
        res = CliRunner().invoke(main, ["audit", "--network", str(plain), "--scores",
                                        str(scores), "--propose-map", str(tmp_path / "x")])
        assert res.exit_code == 2 and "--propose-map needs --network to be a signed" \
            in res.output

"""The TEST-ONLY fault modes of a node: parsing, the env gate, and what each mode serves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler
from click.testing import CliRunner

from nixshard.localnet import LocalNetworkError, NodeProcess
from storage_network.wire.stripe import shard_id
from storage_network.wire.write_auth import Publisher
from storage_node.app import create_app
from storage_node.appkeys import STORE
from storage_node.cli import node_command
from storage_node.config import NodeConfig
from storage_node.faults import ENV_VAR, Faults, FaultSpecError, fault_middleware, parse_faults

from .samples import put_shards, stripe


def run_cli(tmp_path: Path, publisher: Publisher, *fault_args: str,
            env: dict[str, str | None]) -> tuple[int, str]:
    args = ["--data", str(tmp_path / "data"), "--accept-publisher", publisher.public.text(),
            "--listen", "127.0.0.1:1", *fault_args]
    result = CliRunner().invoke(node_command, args, env=env)
    return result.exit_code, result.output


# -- parsing ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("specs", "faults"), [
    (["stall=10"], Faults(stall=10.0)),
    (["stall=0.25"], Faults(stall=0.25)),
    (["flip"], Faults(flip=True)),
    (["short"], Faults(short=True)),
    (["lie-has"], Faults(lie_has=True)),
    (["stall=2,flip", "lie-has"], Faults(stall=2.0, flip=True, lie_has=True)),
    ([" flip , short "], Faults(flip=True, short=True)),
    (["deep-json"], Faults(deep_json=True)),
    (["endless"], Faults(endless=True)),
    (["trickle=100"], Faults(trickle=100.0)),
    (["slow-has=2.5"], Faults(slow_has=2.5)),
    (["stale-records"], Faults(stale_records=True)),
    (["trickle=1,slow-has=3,stale-records,deep-json,lie-has"],
     Faults(trickle=1.0, slow_has=3.0, stale_records=True, deep_json=True, lie_has=True)),
    ([], Faults()),
])
def test_parse_faults(specs: list[str], faults: Faults) -> None:
    assert parse_faults(specs) == faults
    assert parse_faults([faults.describe()] if faults.active else []) == faults
    assert faults.active == bool(specs)


@pytest.mark.parametrize(("spec", "message"), [
    ("", "empty fault mode"),
    ("flip,", "empty fault mode"),
    ("stall", "'stall' needs seconds: stall=SECONDS"),
    ("stall=", "not a number of seconds"),
    ("stall=soon", "stall='soon': not a number of seconds"),
    ("stall=-1", "want a positive number of seconds"),
    ("stall=0", "want a positive number of seconds"),
    ("stall=inf", "want a positive number of seconds"),
    ("stall=nan", "want a positive number of seconds"),
    ("flip=1", "fault mode 'flip' takes no value"),
    ("lie-has=yes", "fault mode 'lie-has' takes no value"),
    ("explode", "unknown fault mode 'explode': want one of stall=SECONDS, "
                "trickle=BYTES_PER_SECOND, slow-has=SECONDS, flip, short, lie-has, deep-json, "
                "endless, stale-records"),
    ("flip,flip", "fault mode 'flip' is given twice"),
    ("stall=1,stall=2", "fault mode 'stall' is given twice"),
    ("trickle", "'trickle' needs bytes per second: trickle=BYTES_PER_SECOND"),
    ("trickle=fast", "trickle='fast': not a number of bytes per second"),
    ("trickle=0", "want a positive number of bytes per second"),
    ("slow-has", "'slow-has' needs seconds: slow-has=SECONDS"),
    ("slow-has=-2", "want a positive number of seconds"),
    ("deep-json=1", "fault mode 'deep-json' takes no value"),
    ("endless=yes", "fault mode 'endless' takes no value"),
    ("stale-records=1", "fault mode 'stale-records' takes no value"),
    ("endless,trickle=10", "'endless' and 'trickle' cannot be combined"),
    ("endless,endless", "fault mode 'endless' is given twice"),
])
def test_bad_fault_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message.replace("(", r"\(")):
        parse_faults([spec])


# -- the command line ------------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, "", "0", "yes", "true"])
def test_fault_without_the_env_gate_is_refused(tmp_path: Path, publisher: Publisher,
                                               value: str | None) -> None:
    code, out = run_cli(tmp_path, publisher, "--fault", "flip", env={ENV_VAR: value})
    assert code == 2
    assert "--fault makes this node misbehave on purpose and is for tests only" in out
    assert f"{ENV_VAR}=1" in out
    assert not (tmp_path / "data").exists()


def test_bad_fault_spec_is_a_usage_error(tmp_path: Path, publisher: Publisher) -> None:
    code, out = run_cli(tmp_path, publisher, "--fault", "stall=never", env={ENV_VAR: "1"})
    assert code == 2
    assert "Invalid value for --fault: " in out
    assert "stall='never': not a number of seconds" in out


def test_fault_option_is_hidden() -> None:
    out = CliRunner().invoke(node_command, ["--help"]).output
    assert "--data" in out and "--fault" not in out


def test_node_process_with_faults_warns_at_start(tmp_path: Path, publisher: Publisher,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "1")
    with NodeProcess(tmp_path / "data", [publisher.public.text()], node_id="node-f",
                     extra_args=["--fault", "stall=3,flip"]) as node:
        assert "WARNING" in node.log_text()
        assert "TEST FAULTS ACTIVE on node node-f: stall=3,flip" in node.log_text()


def test_node_process_without_the_env_gate_does_not_start(
        tmp_path: Path, publisher: Publisher, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    node = NodeProcess(tmp_path / "data", [publisher.public.text()], node_id="node-f",
                       extra_args=["--fault", "flip"])
    with pytest.raises(LocalNetworkError, match="exited"):
        with node:
            pass
    assert f"it is refused unless the environment has {ENV_VAR}=1" in node.log_text()


# -- what a faulty node serves (in-process) --------------------------------------------------

def node_config(tmp_path: Path, publisher: Publisher, faults: Faults) -> NodeConfig:
    return NodeConfig(tmp_path / "data", "node-1", {publisher.name: publisher.public},
                      faults=faults)


async def stored(client: TestClient, publisher: Publisher) -> list[tuple[str, bytes]]:
    shards = stripe(n=3, size=1000)
    await put_shards(client, publisher, shards)
    return shards


@pytest.fixture
async def faulty(tmp_path: Path, publisher: Publisher,
                 request: pytest.FixtureRequest) -> AsyncIterator[TestClient]:
    """An in-process node with the faults given by indirect parametrisation."""
    config = node_config(tmp_path, publisher, request.param)
    async with TestClient(TestServer(create_app(config))) as client:
        yield client


@pytest.mark.parametrize("faulty", [Faults(flip=True)], indirect=True)
async def test_flip_changes_the_middle_byte(faulty: TestClient, publisher: Publisher) -> None:
    for sid, body in await stored(faulty, publisher):
        resp = await faulty.get(f"/shards/{sid}")
        assert resp.status == 200
        served = await resp.read()
        assert len(served) == len(body)
        diff = [i for i in range(len(body)) if served[i] != body[i]]
        assert diff == [len(body) // 2]
        assert served[len(body) // 2] == body[len(body) // 2] ^ 0xFF
    absent = shard_id(bytes(32), 0)
    assert (await faulty.get(f"/shards/{absent}")).status == 404
    assert (await faulty.get("/shards/nonsense")).status == 400


@pytest.mark.parametrize("faulty", [Faults(short=True)], indirect=True)
async def test_short_serves_half_a_well_framed_body(faulty: TestClient,
                                                    publisher: Publisher) -> None:
    for sid, body in await stored(faulty, publisher):
        resp = await faulty.get(f"/shards/{sid}")
        assert resp.status == 200
        assert resp.content_length == len(body) // 2
        served = await resp.read()
        assert served == body[:len(body) // 2]


@pytest.mark.parametrize("faulty", [Faults(lie_has=True)], indirect=True)
async def test_lie_has_claims_everything_but_serves_only_what_it_has(
        faulty: TestClient, publisher: Publisher) -> None:
    shards = await stored(faulty, publisher)
    absent = [shard_id(bytes([7]) * 32, i) for i in range(3)]
    ids = [shards[0][0], *absent]
    resp = await faulty.post("/shards/has", json={"ids": ids})
    assert resp.status == 200
    assert await resp.json() == {"present": ids}
    assert (await faulty.get(f"/shards/{absent[0]}")).status == 404
    resp = await faulty.get(f"/shards/{shards[0][0]}")
    assert await resp.read() == shards[0][1]  # what it has, it serves intact
    assert (await faulty.post("/shards/has", data=b"not json")).status == 400


async def test_stall_waits_before_every_request_but_healthz(
        tmp_path: Path, publisher: Publisher) -> None:
    """The stall's sleep is recorded, not slept: no test here depends on the clock."""
    paths: list[str] = []
    waits: list[tuple[float, str]] = []

    @web.middleware
    async def note_path(request: web.Request, handler: Handler) -> web.StreamResponse:
        paths.append(request.path)
        return await handler(request)

    async def record_sleep(seconds: float) -> None:
        waits.append((seconds, paths[-1]))

    app = create_app(node_config(tmp_path, publisher, Faults()))
    app.middlewares.append(note_path)
    app.middlewares.append(fault_middleware(Faults(stall=10.0), app[STORE], sleep=record_sleep))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        assert waits == []
        shards = await stored(client, publisher)
        sid = shards[0][0]
        resp = await client.get(f"/shards/{sid}")
        assert resp.status == 200 and await resp.read() == shards[0][1]
        assert (await client.post("/shards/has", json={"ids": [sid]})).status == 200
        assert (await client.get("/healthz")).status == 200
    assert waits == [(10.0, path) for path in
                     [f"/shards/{i}" for i, _ in shards] + [f"/shards/{sid}", "/shards/has"]]

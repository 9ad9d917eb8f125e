"""`nixshard doctor`: each planted fault is named (a skewed clock, a wrong node id, an
unreachable node, a signing key the network does not list); a good setup passes; the
checks themselves on hand-made observations."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from nix_formats.keys import SecretKey
from nixshard.doctor_checks import Finding, Level, check_cache_secret, check_network, exit_status
from nixshard.doctor_http import ANSWER_LIMIT, json_object
from nixshard.doctor_nixconf import GatewayProbe, NixSettings, check_gateway, check_nix_conf
from nixshard.doctor_nodes import (
    NodeProbe,
    check_clocks,
    check_node_ids,
    classify_write_refusal,
    probe_nodes,
    skew_from_date,
)
from nixshard.localnet import LocalNetwork, ManagedProcess, NodeProcess, new_publisher
from nixshard.localnet.ports import free_port
from nixshard.localnet.process import NIXSHARD
from storage_network import CacheSecret, Keyring
from storage_network.config import Network, NodeInfo, init_network, write_network

if TYPE_CHECKING:
    from nixshard.seaweed import SeaweedServer

SKEW_SECONDS = -3 * 3600
"""The planted clock: three hours behind."""

FAKE_NODE = '''
"""A node whose clock is off: it answers /healthz like a nixshard node, with an HTTP Date
SKEW seconds off, and checks signed writes against that clock (write_auth, as a node)."""
import email.utils, sys, time
from aiohttp import web
from storage_network.errors import AuthError
from storage_network.wire.write_auth import parse_publisher_key, parse_write_claim

port, node_id, skew, key = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
keys = {parse_publisher_key(key).name: parse_publisher_key(key)}

def now() -> float:
    return time.time() + skew

@web.middleware
async def fake_clock(request, handler):
    response = await handler(request)
    response.headers["Date"] = email.utils.formatdate(now(), usegmt=True)
    return response

async def healthz(request):
    return web.json_response({"status": "ok", "node_id": node_id, "shards": 0,
                              "shard_bytes": 0, "records": 0, "free_bytes": 1 << 40})

async def has(request):
    try:
        parse_write_claim(keys, node_id, request.headers, now=now())
    except AuthError as exc:
        return web.Response(status=403, text=str(exc))
    return web.json_response({"present": []})

app = web.Application(middlewares=[fake_clock])
app.router.add_get("/healthz", healthz)
app.router.add_post("/shards/has", has)
web.run_app(app, host="127.0.0.1", port=port, print=None)
'''


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`nixshard doctor ARGS` as a process (the registered subcommand once the CLI has it)."""
    from nixshard.cli import main
    command = ([*NIXSHARD, "doctor"] if "doctor" in main.commands else
               [sys.executable, "-c", "from nixshard.doctor_cli import doctor_command; "
                                      "doctor_command(prog_name='nixshard doctor')"])
    base = {k: v for k, v in os.environ.items()
            if k not in ("NIXSHARD_SIGNING_KEY", "NIXSHARD_CACHE_SECRET", "NIX_CONFIG")}
    return subprocess.run([*command, *args], capture_output=True, text=True, check=False,
                          timeout=300, env={**base, **(env or {})})


def problems(res: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], list[str]]:
    """The problems of a `--json` run, by (check, subject)."""
    found: dict[tuple[str, str], list[str]] = {}
    for f in json.loads(res.stdout)["findings"]:
        if f["level"] == "problem":
            found.setdefault((f["check"], f["subject"]), []).append(f["message"])
    return found


def levels(res: subprocess.CompletedProcess[str], check: str) -> dict[str, str]:
    return {f["subject"]: f["level"] for f in json.loads(res.stdout)["findings"]
            if f["check"] == check}


@dataclass
class Planted:
    network_file: Path
    good_key: Path
    stranger_key: Path
    stranger: str


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    """Six nodes in one network file: node-1..3 good, node-4 a real node run under
    another id, node-5 nothing listening, node-6 a node whose clock is 3 h behind."""
    root = tmp_path_factory.mktemp("doctor")
    publisher, secret = new_publisher("doctor-test-1")
    (root / "good.key").write_text(secret)
    stranger = SecretKey.generate("doctor-stranger-1")
    (root / "stranger.key").write_text(stranger.text())
    (root / "fake_node.py").write_text(FAKE_NODE)
    with LocalNetwork(root, publisher) as net:
        good = net.start_nodes(3, 2, 1)
        impostor = NodeProcess(root / "impostor", [publisher.public.text()], "impostor-7")
        net.nodes.append(impostor)
        impostor.start().wait_ready()
        port = free_port()
        skewed = ManagedProcess(
            "skewed", [str(root / "fake_node.py"), str(port), "node-6", str(SKEW_SECONDS),
                       publisher.public.text()],
            f"http://127.0.0.1:{port}", root / "skewed.log", program=(sys.executable,))
        with skewed:
            nodes = (*good.nodes, NodeInfo("node-4", impostor.url),
                     NodeInfo("node-5", f"http://127.0.0.1:{free_port()}"),
                     NodeInfo("node-6", skewed.url))
            path = root / "planted.toml"
            write_network(dataclasses.replace(good, nodes=nodes).validate(), path)
            yield Planted(path, root / "good.key", root / "stranger.key",
                          stranger.public_key().text())


def test_doctor_names_each_planted_fault(planted: Planted) -> None:
    res = doctor("--network", str(planted.network_file), "--signing-key",
                 str(planted.stranger_key), "--timeout", "3", "--json")
    assert res.returncode == 1, res.stderr
    found = problems(res)
    assert set(found) == {("clock", "node-6"), ("node id", "node-4"), ("reach", "node-5"),
                          ("keys", "signing key")}, found
    (clock,) = found[("clock", "node-6")]
    assert "its clock is 3 h 0 min behind this machine's" in clock
    assert "refuses every signed write dated more than 300 s" in clock
    (node_id,) = found[("node id", "node-4")]
    assert "runs as --node-id 'impostor-7'" in node_id
    assert "lists it as 'node-4'" in node_id
    assert "cannot be reached" in found[("reach", "node-5")][0]
    assert f"does not list publisher key {planted.stranger}" in found[("keys", "signing key")][0]
    assert levels(res, "reach") == {"node-1": "ok", "node-2": "ok", "node-3": "ok",
                                    "node-4": "ok", "node-5": "problem", "node-6": "ok"}

    text = doctor("--network", str(planted.network_file), "--signing-key",
                  str(planted.stranger_key), "--timeout", "3")
    assert text.returncode == 1
    listing = text.stdout.split("\n4 problems (")[1]
    for words in ("[clock] node-6:", "[node id] node-4:", "[reach] node-5:",
                  "[keys] signing key:"):
        assert words in listing, text.stdout


def test_a_listed_key_is_tried_on_every_node(planted: Planted) -> None:
    """With the right key the signed probe runs: good nodes accept it, the node under
    another id and the node with the skewed clock refuse it, and say why."""
    res = doctor("--network", str(planted.network_file), "--signing-key",
                 str(planted.good_key), "--timeout", "3", "--json")
    assert res.returncode == 1, res.stderr
    found = problems(res)
    assert set(found) == {("clock", "node-6"), ("node id", "node-4"), ("reach", "node-5")}
    # the probe's refusals are folded into the problems /healthz showed, one each
    (node_id,) = found[("node id", "node-4")]
    assert "runs as --node-id 'impostor-7'" in node_id
    assert "; and refuses writes signed for 'node-4'" in node_id
    (clock,) = found[("clock", "node-6")]
    assert "3 h 0 min behind" in clock
    assert "; and refuses signed writes from this machine" in clock and "away from now" in clock
    assert levels(res, "writes") == {"node-1": "ok", "node-2": "ok", "node-3": "ok"}
    assert levels(res, "keys") == {"signing key": "ok"}


@pytest.mark.nix
def test_a_good_setup_passes_once_nix_uses_the_gateway(tmp_path: Path) -> None:
    """Three nodes and a gateway: the doctor reads Nix's settings through the real
    `nix show-config`; it names what is missing until `nixshard use` wrote it."""
    publisher, secret = new_publisher("doctor-good-1")
    (tmp_path / "secret.key").write_text(secret)
    conf_dir = tmp_path / "etc-nix"
    conf_dir.mkdir()
    env = {"NIX_CONF_DIR": str(conf_dir), "XDG_CONFIG_HOME": str(tmp_path / "none"),
           "XDG_CONFIG_DIRS": str(tmp_path / "none")}
    with LocalNetwork(tmp_path / "net", publisher) as net:
        net.root.mkdir()
        net.start_nodes(3, 2, 1)
        gateway = net.start_daemon()
        args = ["--network", str(net.network_file), "--signing-key",
                str(tmp_path / "secret.key"), "--gateway", gateway]
        before = doctor(*args, "--json", env=env)
        assert before.returncode == 1, before.stderr
        found = problems(before)
        assert set(found) == {("nix.conf", "`nix show-config`")}, found
        messages = " | ".join(found[("nix.conf", "`nix show-config`")])
        assert f"{gateway} is not among the substituters" in messages
        assert "trusts none of the network's publisher keys" in messages
        assert publisher.public.text() in messages

        used = subprocess.run(
            [sys.executable, "-c", "from nixshard.use_cli import use_command; use_command()",
             gateway, "--key", publisher.public.text(),
             "--nix-conf", str(conf_dir / "nix.conf")],
            capture_output=True, text=True, check=False)
        assert used.returncode == 0, used.stdout + used.stderr
        after = doctor(*args, env=env)
        assert after.returncode == 0, after.stdout
        assert "all is well (0 warnings)" in after.stdout
        assert f"ok       nix.conf  `nix show-config`: {gateway} is a substituter" in after.stdout


def test_buckets_are_checked_for_reachability(tmp_path: Path,
                                             seaweed_server: SeaweedServer) -> None:
    """A bucket node answers a HeadBucket (its clock is not compared); once its endpoint
    is gone the doctor names it."""
    publisher, _ = new_publisher("doctor-s3-1")
    with LocalNetwork(tmp_path, publisher) as net:
        net.start_nodes(2, 2, 1, buckets=1, seaweed=seaweed_server)
        args = ["--network", str(net.network_file), "--timeout", "5", "--json"]
        res = doctor(*args, env=net.env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert levels(res, "reach") == {"node-1": "ok", "node-2": "ok", "node-3": "ok"}
        assert levels(res, "clock") == {"node-1": "ok", "node-2": "ok", "node-3": "skipped"}
        net.bucket("node-3").stop()
        res = doctor(*args, env=net.env)
        assert res.returncode == 1
        (message,) = problems(res)[("reach", "node-3")]
        assert message.startswith("bucket s3://") and "cannot be reached" in message


# --- the checks on hand-made observations ------------------------------------------------


def probe(node_id: str, skew: float | None) -> NodeProbe:
    return NodeProbe(node_id, f"http://{node_id}:9001", "node",
                     health={"status": "ok", "node_id": node_id}, skew=skew,
                     skew_uncertainty=0.6)


def by_subject(found: list[Finding]) -> dict[str, Level]:
    return {f.subject: f.level for f in found}


def test_clock_levels_and_this_machines_clock() -> None:
    found = check_clocks([probe("a", 0.4), probe("b", -45.0), probe("c", 301.0),
                          probe("d", None)])
    assert by_subject(found) == {"a": Level.OK, "b": Level.WARNING, "c": Level.PROBLEM,
                                 "d": Level.WARNING}
    assert "no HTTP Date header" in found[-1].message
    # every node off by about the same: this machine's clock is the one to fix
    found = check_clocks([probe("a", 3600.0), probe("b", 3601.0), probe("c", 3599.5)])
    assert found[-1].subject == "this machine" and found[-1].level is Level.PROBLEM
    assert "this machine's clock is the likely one to fix" in found[-1].message
    assert check_clocks([probe("a", 3600.0), probe("b", 0.0)])[-1].subject == "b"


def test_skew_from_an_http_date() -> None:
    skew, uncertainty = skew_from_date("Thu, 01 Jan 1970 01:00:00 GMT", 10.0, 11.0)
    assert skew == pytest.approx(3600 + 0.5 - 10.5)
    assert uncertainty == pytest.approx(1.0)
    assert skew_from_date(None, 0, 0) == (None, 0.0)
    assert skew_from_date("yesterday", 0, 0) == (None, 0.0)


def test_node_ids() -> None:
    quiet = dataclasses.replace(probe("b", 0.0), health={"status": "ok"})
    gateway = dataclasses.replace(probe("e", 0.0), health={"status": "ok", "nodes": 6,
                                                           "nodes_in_good_standing": 6})
    found = check_node_ids([probe("a", 0.0), quiet,
                            dataclasses.replace(probe("c", 0.0), health={"node_id": "x"}),
                            dataclasses.replace(probe("d", 0.0), health=None, error="down"),
                            gateway])
    assert by_subject(found) == {"a": Level.OK, "b": Level.WARNING, "c": Level.PROBLEM,
                                 "e": Level.PROBLEM}
    assert "does not report its node id" in found[1].message
    assert "answers like a gateway" in found[3].message


def test_write_refusals_are_explained() -> None:
    f = classify_write_refusal("n1", 403, "X-Nixshard-Date is 900 s away from now (max 300)")
    assert (f.check, f.level) == ("clock", Level.PROBLEM)
    f = classify_write_refusal("n1", 403, "write is signed for node 'n1', this is node 'x'")
    assert f.check == "node id" and "--node-id n1" in f.message
    f = classify_write_refusal("n1", 403, "publisher key 'k' is not accepted here")
    assert f.check == "writes" and "--accept-publisher" in f.message


def network(private: bool = False, urls: tuple[str, ...] = ("http://a:1", "http://b:1",
                                                            "http://c:1")) -> Network:
    key = SecretKey.generate("doctor-unit-1").public_key().text()
    from storage_network import parse_publisher_key
    return init_network(urls, 2, 1, [parse_publisher_key(key)], private=private)


def test_network_file_checks() -> None:
    net = network(urls=("http://a:1", "http://A:1/", "http://c:1"))
    found = check_network(net)
    assert found[-1].level is Level.PROBLEM and "node-1 and node-2 have one URL" in \
        found[-1].message
    bare = dataclasses.replace(network(), publishers={})
    assert check_network(bare)[0].level is Level.PROBLEM


def test_cache_secret_rules() -> None:
    keyring = Keyring([CacheSecret.generate("doc-secret-1")]).text()
    private, public = network(private=True), network()
    assert check_cache_secret(public, None, {}, publishing=True) == []
    assert check_cache_secret(private, None, {}, publishing=False)[0].level is Level.SKIPPED
    (missing,) = check_cache_secret(private, None, {}, publishing=True)
    assert missing.level is Level.PROBLEM and "no cache secret was given" in missing.message
    (good,) = check_cache_secret(private, None, {"NIXSHARD_CACHE_SECRET": keyring},
                                 publishing=True)
    assert good.level is Level.OK and "doc-secret-1" in good.message
    (wrong,) = check_cache_secret(public, None, {"NIXSHARD_CACHE_SECRET": keyring},
                                  publishing=False)
    assert wrong.level is Level.PROBLEM and "does not say private = true" in wrong.message


def test_nix_conf_findings(tmp_path: Path) -> None:
    net = network()
    (key,) = [k.text() for k in net.publishers.values()]
    gw = "http://gw.lan:5000"
    only_trusted = NixSettings({"substituters": ["https://cache.nixos.org/"],
                                "trusted-substituters": [gw + "/"],
                                "trusted-public-keys": [key]}, "nix.conf")
    found = check_nix_conf(only_trusted, gw, net, needs_credentials=False)
    assert [f.level for f in found] == [Level.PROBLEM, Level.OK, Level.WARNING, Level.WARNING]
    assert "only in trusted-substituters" in found[0].message
    assert "fallback is not true" in found[2].message
    assert "connect-timeout is 0" in found[3].message
    netrc = tmp_path / "netrc"
    netrc.write_text("machine other login a password b\n")
    good = NixSettings({"substituters": [gw], "trusted-public-keys": [key],
                        "fallback": ["true"], "connect-timeout": ["5"],
                        "netrc-file": [str(netrc)]}, "nix.conf")
    found = check_nix_conf(good, gw, net, needs_credentials=True)
    assert exit_status(found) == 1
    assert "has no `machine gw.lan` entry" in found[-1].message
    netrc.write_text("machine gw.lan login a password b\n")
    assert exit_status(check_nix_conf(good, gw, net, needs_credentials=True)) == 0
    unreadable = NixSettings(None, "nix.conf", "nix.conf does not exist")
    assert check_nix_conf(unreadable, gw, net, False)[0].level is Level.PROBLEM


def test_a_gateway_only_in_a_users_own_settings_is_pointed_out() -> None:
    net = network()
    (key,) = [k.text() for k in net.publishers.values()]
    values = {"substituters": ["http://gw"], "trusted-public-keys": [key],
              "fallback": ["true"], "connect-timeout": ["5"]}
    users = NixSettings(values, "`nix show-config`", daemon={"substituters": ["https://c"]})
    (warned,) = [f for f in check_nix_conf(users, "http://gw", net, False)
                 if f.level is Level.WARNING]
    assert "only through your own settings" in warned.message
    system = NixSettings(values, "`nix show-config`", daemon={"substituters": ["http://gw/"]})
    assert all(f.level is Level.OK for f in check_nix_conf(system, "http://gw", net, False))


def test_gateway_findings() -> None:
    net = network()
    down = check_gateway(GatewayProbe("http://gw", error="refused"), net)
    assert down[0].level is Level.PROBLEM and "cannot be reached: refused" in down[0].message
    other = check_gateway(GatewayProbe("http://gw", health={"nodes": 5}, cache_info_status=200,
                                       cache_info="StoreDir: /nix/store\n"), net)
    assert [f.level for f in other] == [Level.OK, Level.WARNING]
    assert "serves a network of 5 nodes, the network file lists 3" in other[1].message
    locked = check_gateway(GatewayProbe("http://gw", health={"nodes": 3},
                                        cache_info_status=401), net)
    assert locked[0].level is Level.OK and "asks for credentials" in locked[0].message


def test_nix_must_trust_the_writing_keys_not_the_maintainers() -> None:
    if "maintainers" not in {f.name for f in dataclasses.fields(Network)}:
        pytest.skip("this tree's network file has no key roles")
    from nixshard.doctor_nixconf import signing_keys
    from storage_network import parse_publisher_key
    writer = SecretKey.generate("doctor-writer-1").public_key().text()
    ops = SecretKey.generate("doctor-ops-1").public_key().text()
    net = init_network(("http://a:1", "http://b:1", "http://c:1"), 2, 1,
                       [parse_publisher_key(writer)], maintainers=[parse_publisher_key(ops)])
    assert signing_keys(net) == {"doctor-writer-1": writer}
    settings = NixSettings({"substituters": ["http://gw"], "trusted-public-keys": [writer],
                            "fallback": ["true"], "connect-timeout": ["5"]}, "nix.conf")
    assert exit_status(check_nix_conf(settings, "http://gw", net, False)) == 0
    assert not [f for f in check_nix_conf(settings, "http://gw", net, False)
                if f.level is not Level.OK]


# --- hostile servers -----------------------------------------------------------------------


@contextlib.contextmanager
def answering_server(body: bytes) -> Iterator[str]:
    """A tiny aiohttp server on 127.0.0.1 (in a thread) answering every GET with 200 and
    ``body``; yields its base URL."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    port = free_port()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_json_object_refuses_what_is_not_an_object() -> None:
    assert json_object(b'{"status": "ok"}') == {"status": "ok"}
    assert json_object('{"nodes": 3}') == {"nodes": 3}
    for body in (b"[" * 65536, b"[1]", b"\xff{}", b"", "not json"):
        assert json_object(body) is None


def test_a_gateway_answering_deeply_nested_json_is_a_problem_not_a_crash(
        tmp_path: Path) -> None:
    """``[`` * 65536 makes the JSON parser raise RecursionError: the doctor reports the
    gateway, it does not die with a traceback."""
    dead = tuple(f"http://127.0.0.1:{free_port()}" for _ in range(3))
    write_network(network(urls=dead), tmp_path / "net.toml")
    with answering_server(b"[" * 65536) as gateway:
        res = doctor("--network", str(tmp_path / "net.toml"), "--gateway", gateway,
                     "--nix-conf", str(tmp_path / "nix.conf"), "--timeout", "3", "--json")
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 1, res.stdout + res.stderr
    (message,) = problems(res)[("gateway", gateway)]
    assert "GET /healthz answered 200: is this a nixshard gateway?" in message


def test_a_node_answering_too_much_is_named_so() -> None:
    """A /healthz answer longer than the doctor reads is reported as too large, not
    parsed cut short."""
    padded = b" " * ANSWER_LIMIT + b'{"status": "ok", "node_id": "node-1"}'
    with answering_server(padded) as big, answering_server(b'{"status": "ok"}') as fine:
        net = network(urls=(big, fine, f"http://127.0.0.1:{free_port()}"))
        probes = asyncio.run(probe_nodes(net, 5.0))
    assert probes[0].error is not None and "answer too large" in probes[0].error
    assert probes[1].error is None and probes[1].health == {"status": "ok"}
    assert probes[2].error is not None and "too large" not in probes[2].error

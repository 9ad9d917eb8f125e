"""Issue 15's acceptance on real processes and the real nix binary: a live epoch change.

Epoch 2, signed by 2 of 3 maintainers, adds a node and drains another.  A
gateway and a ``nixshard push --watch-store`` started on epoch 1 (from a
bootstrap file) pick it up without a restart.  After repair, the drained node
holds nothing that is needed: with it and one more node killed, ``nix copy``
from the gateway still gets every path pushed, verified.

4-of-6, ``placement = "groups"`` over three operators: with 6 active nodes
every stripe has a shard on each, so a stripe written under epoch 1 has one on
node 1 and a stripe written under epoch 2 (node 1 draining, node 7 active) has
one on node 7 and none on node 1, whatever the chunk ids.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nixshard.localnet import ManagedProcess, free_port, stop_all
from storage_network.client import NetworkClient
from storage_network.config import Network
from storage_network.network_map import parse_signed_map
from storage_network.network_map.source import REFRESH_ENV
from storage_network.read.record_lookup import fetch_record
from tests.network_map.maps import next_epoch, sign

from .conftest import GATEWAY_WORKERS, Closure, NixKey, nix, nixshard, verify
from .epochs import EpochNetwork, new_network, wait_until

pytestmark = pytest.mark.nix

K, M = 4, 2
NEW_PATH_BYTES = 1 << 20
"""Random bytes of each store path the test adds (a few chunks)."""


def served_epoch(url: str) -> int | None:
    """The newest epoch a node serves; None when it serves none or does not answer."""
    try:
        resp = httpx.get(f"{url}/map", timeout=5)
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    return parse_signed_map(resp.content).epoch


def add_store_path(directory: Path, label: str) -> str:
    """A new store path (``nix-store --add`` of a file of random bytes)."""
    source = directory / f"nixshard-epoch-{label}-{time.time_ns()}"
    source.write_bytes(os.urandom(NEW_PATH_BYTES))
    return nix("nix-store", "--add", str(source)).stdout.strip()


def stripe_roots(network: Network, store_path: str) -> list[str]:
    """The stripe roots (hex) of the chunks of ``store_path``'s NAR, from its record."""
    async def lookup() -> list[str]:
        async with NetworkClient(network) as net:
            record = await fetch_record(net, Path(store_path).name[:32])
            return [chunk.root.hex() for chunk in record.manifest.chunks]
    return asyncio.run(lookup())


def on_disk(net: EpochNetwork) -> dict[int, dict[str, set[int]]]:
    """Each started node's shard indices by stripe root (hex), by node number."""
    return {number: net.shards(number) for number in net.nodes}


def repair(boot: Path, key: Path, *extra: str) -> dict[str, object]:
    """``nixshard repair --json`` against the network of ``boot``; asserts success."""
    res = nixshard("repair", "--network", str(boot), "--signing-key", str(key), "--json",
                   "--no-progress", *extra)
    assert res.returncode == 0, res.stdout + res.stderr
    report: dict[str, object] = json.loads(res.stdout)
    return report


class Watcher:
    """``nixshard push --watch-store`` as a process, its log in ``log_path``."""

    def __init__(self, boot: Path, key: NixKey, log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nixshard", "push", "--watch-store", "--network",
                 str(boot), "--signing-key", str(key.secret_file), "--watch-interval", "0.2",
                 "--jobs", "2"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, REFRESH_ENV: "1"})

    def log(self) -> str:
        """What it logged so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, what: str) -> None:
        """Wait until its log holds ``text``; fail at once if it exited."""
        def seen() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"the watcher exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            return text in self.log()
        wait_until(seen, what)

    def stop(self) -> int:
        """SIGTERM, then its exit status (killed after 120 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def added_paths() -> Iterator[list[str]]:
    """Store paths a test adds, deleted after it (keeps the shared store small)."""
    paths: list[str] = []
    yield paths
    if paths:
        nix("nix-store", "--delete", *paths, check=False)


def test_a_live_epoch_change_adds_a_node_and_drains_another(
        nix_key: NixKey, closure: Closure, tmp_path: Path, added_paths: list[str]) -> None:
    net = new_network(tmp_path, nix_key.publisher.public, count=6, spare=1, k=K, m=M)
    first, second, third = (net.maintainers[i].key for i in range(3))
    epoch1_file = net.write("epoch1.json", net.epoch1)
    boot = tmp_path / "bootstrap.toml"
    res = nixshard("map", "bootstrap", str(epoch1_file), "-o", str(boot))
    assert res.returncode == 0, res.stderr
    port = free_port()
    gateway = ManagedProcess(
        "gateway", ["serve", "--network", str(boot), "--listen", f"127.0.0.1:{port}",
                    "--cache-dir", str(tmp_path / "gateway-cache"), "--cache-max-bytes", "0",
                    "--workers", str(GATEWAY_WORKERS)],
        f"http://127.0.0.1:{port}", tmp_path / "gateway.log", env={REFRESH_ENV: "1"})
    watcher: Watcher | None = None
    try:
        # 1-2. six keyed nodes on epoch 1; a gateway and a watcher started from the bootstrap
        net.start(range(1, 7), epoch1_file)
        gateway.start().wait_ready()
        watcher = Watcher(boot, nix_key, tmp_path / "watch.log")
        watcher.wait_for("watching /nix/store", "the watcher lists the store")
        res = nixshard("push", "--network", str(boot), "--signing-key",
                       str(nix_key.secret_file), "--no-progress", *closure.roots)
        assert res.returncode == 0, res.stdout + res.stderr
        old_path = add_store_path(tmp_path, "1")
        added_paths.append(old_path)
        watcher.wait_for(f"pushed {old_path} (", "the watcher pushes a path under epoch 1")
        old_roots = stripe_roots(net.epoch1.network, old_path)
        drained = net.shards(1)
        assert old_roots and all(drained.get(root) for root in old_roots)

        # 3. node 7 starts on epoch 1; epoch 2 (node 7 in, node 1 draining), by 2 of 3
        net.start([7], epoch1_file)
        nodes = (net.entry(1, "draining"), *(net.entry(i) for i in range(2, 8)))
        epoch2 = sign(next_epoch(net.epoch1, nodes=nodes), first, third)
        epoch2_file = net.write("epoch2.json", epoch2)
        res = nixshard("map", "publish", str(epoch2_file), "--to", net.urls[1])
        assert res.returncode == 0 and "accepted epoch 2" in res.stdout, res.stdout + res.stderr
        spread = wait_until(lambda: all(served_epoch(url) == 2 for url in net.urls),
                            "every node serves epoch 2")
        print(f"\nevery node serves epoch 2 within {spread:.2f} s of node 2 taking it "
              "(nixshard map publish returned)")
        wait_until(lambda: gateway.log_text().count("network map: now at epoch 2")
                   >= GATEWAY_WORKERS, f"each of the {GATEWAY_WORKERS} gateway workers "
                   "takes epoch 2")
        assert httpx.get(f"{gateway.url}/healthz").json()["nodes"] == 7
        watcher.wait_for("network map: now at epoch 2", "the watcher takes epoch 2")

        # 4. a path that appears now is pushed under epoch 2: on node 7, not on node 1
        new_path = add_store_path(tmp_path, "2")
        added_paths.append(new_path)
        watcher.wait_for(f"pushed {new_path} (", "the watcher pushes a path under epoch 2")
        new_roots = stripe_roots(epoch2.network, new_path)
        assert new_roots
        disks = on_disk(net)
        for root in new_roots:
            assert disks[7].get(root) and not disks[1].get(root), (root, disks)

        # 6. a map signed by 1 of 3 is refused and changes nothing
        weak = sign(next_epoch(epoch2, k=3, m=3), second)
        res = nixshard("map", "publish", str(net.write("weak.json", weak)), "--to", net.urls[2])
        assert res.returncode != 0 and "refused: 422" in res.stdout, res.stdout + res.stderr
        assert "epoch 3 has 1 valid signature of maintainers of epoch 2, needs 2" in res.stdout
        assert [served_epoch(url) for url in net.urls] == [2] * 7

        # a clean stop; exit status 1 could only name paths other tests on this machine
        # add and delete meanwhile (the watcher pushes whatever appears in /nix/store)
        code = watcher.stop()
        stopped = watcher.log().partition("watch stopped: ")[2]
        assert stopped and not any(p in stopped for p in added_paths), (code, watcher.log())

        # 5. repair empties node 1 of every shard still needed; then node 1 and node 2 die
        report = repair(boot, net.maintainers[0].secret_file)
        assert report["lost"] == [] and report["unplaceable"] == 0, report
        assert int(report["shards_written"]) > 0  # type: ignore[call-overload]
        check = repair(boot, net.maintainers[0].secret_file, "--dry-run")
        assert check["healthy"] == check["stripes"] and check["degraded"] == 0, check
        disks = on_disk(net)
        assert disks[1], "node 1 held shards before the change"
        for root in disks[1]:
            active = set().union(*(disks[i].get(root, set()) for i in range(2, 8)))
            assert active == set(range(K + M)), (root, active)
        replicas = epoch2.document.record_replicas
        assert net.records(1), "node 1 held records before the change"
        for key in net.records(1):
            copies = sum(key in net.records(i) for i in range(2, 8))
            assert copies >= replicas, f"record {key}: {copies} copies on active nodes"
        for number in (1, 2):
            net.nodes[number].kill()
        everything = [*closure.roots, old_path, new_path]
        dest = tmp_path / "copy"
        nix("nix", "copy", "--from", gateway.url, "--to", str(dest),
            "--option", "trusted-public-keys", nix_key.public, *everything)
        verify(nix_key, dest, everything)
    finally:
        if watcher is not None:
            watcher.stop()
        stop_all([gateway, *net.nodes.values()])

"""``nixshard push --watch-store``: the new-path rule, failed rounds, and the real thing."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nix_formats.keys import SecretKey
from nixshard.localnet import env_with_nix_config, new_publisher
from storage_network.client import NetworkClient
from storage_network.config import Network
from storage_network.errors import NotFoundError
from storage_network.read.record_lookup import fetch_record
from tests.support.network import running_network
from uploader.backoff import Backoff
from uploader.errors import StoreWatchError
from uploader.watch import StoreWatcher, is_candidate, new_store_paths, scan_store, watch_store

from .service_support import offline_network, wait_for

H1 = "0" * 32
H2 = "1" * 32
H3 = "a" * 32


def test_new_store_paths_takes_only_new_pushable_entries() -> None:
    known = {f"{H1}-old", f"{H2}-gone"}
    listing = [
        f"{H1}-old",                # seen before
        f"{H3}-hello-2.12",         # new store path
        f"{H2}-zlib-1.3",           # new store path
        f"{H2}-zlib-1.3",           # listed twice: once out
        f"{H3}-hello-2.12.lock",    # Nix's lock file
        f"{H3}-hello.drv",          # derivation: skipped by default
        f"{H3}-hello.drv.chroot",   # sandboxed build root
        f"{H3}-hello-2.12.check",   # `--check` output
        ".links",                   # hard-link farm
        "add-4711-0",               # temporary name
        "e" * 32 + "-bad",          # 'e' is not nix32
        f"{H1}_no-dash",
    ]
    assert new_store_paths(known, listing) == [f"{H2}-zlib-1.3", f"{H3}-hello-2.12"]
    assert new_store_paths(known, listing, include_drv=True) == [
        f"{H2}-zlib-1.3", f"{H3}-hello-2.12", f"{H3}-hello.drv"]
    assert new_store_paths(set(listing), listing) == []
    assert new_store_paths(set(), []) == []


def test_is_candidate() -> None:
    assert is_candidate(f"{H1}-x")
    assert not is_candidate(f"{H1}-x.lock")
    assert not is_candidate(f"{H1}-x.drv")
    assert is_candidate(f"{H1}-x.drv", include_drv=True)
    assert not is_candidate(f"{H1}-.hidden")
    assert not is_candidate("tmp-123")


def test_scan_store_lists_names_and_names_a_missing_directory(tmp_path: Path) -> None:
    (tmp_path / f"{H1}-a").mkdir()
    (tmp_path / f"{H1}-a.lock").write_text("")
    assert scan_store(str(tmp_path)) == {f"{H1}-a", f"{H1}-a.lock"}
    with pytest.raises(StoreWatchError, match=f"cannot list the store directory "
                                              f"{tmp_path}/missing: No such file"):
        scan_store(str(tmp_path / "missing"))


def test_a_failed_round_is_logged_and_retried_after_a_backoff(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Entries Nix cannot vouch for (here: not in Nix's store) fail the round, not the
    watcher; they are tried again when their backoff allows, not every round."""
    store = tmp_path / "store"
    store.mkdir()
    (store / f"{H1}-before").mkdir()
    network, nix_key, publisher = offline_network("watch-tests-1")
    now = [0.0]
    retry = Backoff(10.0, 15.0, clock=lambda: now[0], rand=lambda: 1.0)

    async def run() -> StoreWatcher:
        async with NetworkClient(network) as net:
            watcher = StoreWatcher(net, nix_key, publisher, str(store), jobs=2, retry=retry)
            assert watcher.baseline() == 1
            await watcher.round()
            assert watcher.report.error is None  # nothing new: nothing asked
            (store / f"{H2}-after").mkdir()
            await watcher.round()
            assert watcher.report.error is not None and retry.failures(f"{H2}-after") == 1
            await watcher.round()  # within its backoff: not asked
            assert watcher.report.error is None and retry.failures(f"{H2}-after") == 1
            for due in (10.0, 25.0, 40.0):  # delays 10, then 20 capped to 15, 15
                now[0] = due - 0.01
                await watcher.round()
                assert watcher.report.error is None
                now[0] = due
                await watcher.round()
                assert watcher.report.error is not None
                assert f"{H2}-after" not in watcher.known
            assert retry.failures(f"{H2}-after") == 4
            shutil.rmtree(store / f"{H2}-after")
            await watcher.round()
            assert retry.failures(f"{H2}-after") == 0  # gone from the store: forgotten
            return watcher

    with caplog.at_level("WARNING", logger="nixshard.push"):
        watcher = asyncio.run(run())
    assert watcher.report.rounds == 10 and watcher.report.pushed == []
    assert watcher.report.complete  # the last round found nothing to do
    lines = [r.getMessage() for r in caplog.records if "cannot look at" in r.getMessage()]
    assert [line.split(" s): ", 1)[0] + " s)" for line in lines] == [
        "round 2: cannot look at 1 new store paths (next try in at most 10.0 s)",
        "round 5: cannot look at 1 new store paths (next try in at most 15.0 s)",
        "round 7: cannot look at 1 new store paths (next try in at most 15.0 s)",
        "round 9: cannot look at 1 new store paths (next try in at most 15.0 s)"]


def test_push_existing_looks_at_what_is_there_at_once(tmp_path: Path) -> None:
    """Without --push-existing the paths there at start are never looked at; with it,
    the first round, at once, looks at them (here Nix refuses them: not its store)."""
    store = tmp_path / "store"
    store.mkdir()
    (store / f"{H1}-before").mkdir()
    network, nix_key, publisher = offline_network("watch-tests-1")

    async def first_round(push_existing: bool) -> StoreWatcher:
        async with NetworkClient(network) as net:
            watcher = StoreWatcher(net, nix_key, publisher, str(store),
                                   push_existing=push_existing)
            assert watcher.baseline() == 1
            stop = asyncio.Event()
            task = asyncio.create_task(watcher.run(stop, interval=3600))
            if push_existing:
                while watcher.report.rounds == 0:  # no wait of an interval first
                    await asyncio.sleep(0.01)
            stop.set()
            await asyncio.wait_for(task, 60)
            return watcher

    plain = asyncio.run(first_round(False))
    assert plain.known == {f"{H1}-before"} and plain.report.error is None
    existing = asyncio.run(asyncio.wait_for(first_round(True), 60))
    assert existing.report.rounds == 2  # the first at once, the last on stop
    assert existing.known == set() and existing.retry.failures(f"{H1}-before") == 1


@pytest.mark.nix
def test_a_path_whose_push_fails_waits_for_its_backoff(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A valid new path the network refuses (no node answers) is tried again only when
    its backoff allows: one log line per try, not one per round."""
    network, nix_key, publisher = offline_network("watch-tests-1")
    now = [0.0]
    retry = Backoff(10.0, 300.0, clock=lambda: now[0], rand=lambda: 1.0)
    tree = tmp_path / "nixshard-watch-backoff"
    tree.mkdir()
    (tree / "f").write_text(f"{time.time_ns()}\n")
    added: list[str] = []

    async def run() -> StoreWatcher:
        async with NetworkClient(network) as net:
            watcher = StoreWatcher(net, nix_key, publisher, "/nix/store", retry=retry)
            watcher.baseline()
            added.append(nix_out("nix-store", "--add", str(tree)))
            name = Path(added[0]).name
            await watcher.round()
            assert added[0] in watcher.report.unpushed and retry.failures(name) == 1
            await watcher.round()  # within its backoff: not tried
            assert added[0] not in watcher.report.unpushed and retry.failures(name) == 1
            now[0] = 10.0
            await watcher.round()
            assert added[0] in watcher.report.unpushed and retry.failures(name) == 2
            return watcher

    try:
        with caplog.at_level("WARNING", logger="nixshard.push"):
            asyncio.run(run())
        lines = [r.getMessage() for r in caplog.records
                 if r.getMessage().startswith("not pushed") and added[0] in r.getMessage()]
        assert [line.split(f": {added[0]}: ")[0] for line in lines] == [
            "not pushed (failure 1, next try in 10.0 s)",
            "not pushed (failure 2, next try in 20.0 s)"], lines
    finally:
        if added:
            subprocess.run(["nix-store", "--delete", *added], capture_output=True,
                           env=env_with_nix_config(), check=False)


def test_watch_store_refuses_bad_arguments(tmp_path: Path) -> None:
    network, nix_key, publisher = offline_network("watch-tests-1")
    with pytest.raises(ValueError, match="interval must be a positive number"):
        asyncio.run(watch_store(network, nix_key, publisher, interval=0))
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        asyncio.run(watch_store(network, nix_key, publisher, jobs=0))
    with pytest.raises(StoreWatchError, match="cannot list the store directory"):
        asyncio.run(watch_store(network, nix_key, publisher, store_dir=str(tmp_path / "no")))


# Two derivations built by /bin/sh; top refers to lib. STAMP makes them new paths.
WATCH_EXPR = (
    'let mk = name: script: derivation { inherit name; system = builtins.currentSystem;'
    ' builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" script ]; };'
    ' lib = mk "nixshard-watch-lib" "mkdir -p $out; echo STAMP > $out/stamp";'
    ' in mk "nixshard-watch-top" "mkdir -p $out; echo ${lib} > $out/lib; echo STAMP > $out/s"'
)


def has_record(network: Network, path: str) -> bool:
    async def ask() -> bool:
        async with NetworkClient(network) as net:
            try:
                await fetch_record(net, Path(path).name[:32])
            except NotFoundError:
                return False
            return True
    return asyncio.run(ask())


def nix_out(*args: str) -> str:
    """stdout of a nix command run with the test NIX_CONFIG."""
    return subprocess.run(list(args), capture_output=True, text=True, env=env_with_nix_config(),
                          check=True).stdout.strip()


@pytest.mark.nix
def test_watch_store_pushes_a_new_build_and_stops_on_sigterm(tmp_path: Path) -> None:
    publisher, secret = new_publisher("watch-e2e-1")
    key_file = tmp_path / "secret.key"
    key_file.write_text(secret)
    built: list[str] = []
    with running_network(tmp_path / "net", publisher=publisher) as local:
        assert local.network is not None
        log_path = tmp_path / "watch.log"
        out_path = tmp_path / "watch.out"
        with open(log_path, "wb") as log, open(out_path, "wb") as out:
            watcher = subprocess.Popen(
                [sys.executable, "-m", "nixshard", "push", "--watch-store",
                 "--network", str(local.network_file), "--signing-key", str(key_file),
                 "--watch-interval", "0.2", "--jobs", "2"],
                stdout=out, stderr=log, stdin=subprocess.DEVNULL)
        try:
            wait_for("the watcher to list the store",
                     lambda: "watching /nix/store" in log_path.read_text()
                     or watcher.poll() is not None, poll_seconds=0.2)
            assert watcher.poll() is None, log_path.read_text()
            expr = WATCH_EXPR.replace("STAMP", f"{time.time_ns()}")
            top = nix_out("nix-build", "--no-out-link", "-E", expr).splitlines()[-1]
            lib = (Path(top) / "lib").read_text().strip()
            drvs = [nix_out("nix-store", "--query", "--deriver", p) for p in (top, lib)]
            built += [top, lib, *drvs]
            wait_for("both records in the network",
                     lambda: has_record(local.network, top) and has_record(local.network, lib),
                     poll_seconds=0.2)
            watcher.send_signal(signal.SIGTERM)
            assert watcher.wait(timeout=120) == 0, log_path.read_text()
            text = log_path.read_text()
            assert f"pushed {lib} (" in text and f"pushed {top} (" in text
            assert text.index(f"pushed {lib} (") < text.index(f"pushed {top} (")
            assert "SIGTERM: stopping after one last round" in text
            assert out_path.read_text().startswith("watch stopped: ")
            assert all(d.endswith(".drv") and not has_record(local.network, d) for d in drvs)
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
            if built:  # this test's own paths: keep the shared store small
                subprocess.run(["nix-store", "--delete", *built], capture_output=True,
                               env=env_with_nix_config(), check=False)


@pytest.mark.nix
def test_a_round_with_a_node_down_says_chunks_are_degraded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """6 nodes, 4-of-6, one dead: the round pushes with 5 shards a chunk and says so."""
    publisher, secret = new_publisher("watch-degraded-1")
    built: list[str] = []
    with running_network(tmp_path / "net", publisher=publisher) as local:
        assert local.network is not None
        local.nodes[3].kill()

        async def run() -> StoreWatcher:
            async with NetworkClient(local.network) as net:  # type: ignore[arg-type]
                watcher = StoreWatcher(net, SecretKey.parse(secret), publisher, "/nix/store",
                                       jobs=2)
                watcher.baseline()
                expr = WATCH_EXPR.replace("STAMP", f"degraded-{time.time_ns()}")
                top = nix_out("nix-build", "--no-out-link", "-E", expr).splitlines()[-1]
                built.extend([top, (Path(top) / "lib").read_text().strip()])
                await watcher.round()
                return watcher

        try:
            with caplog.at_level("INFO", logger="nixshard.push"):
                watcher = asyncio.run(run())
            assert set(built) <= set(watcher.report.pushed), watcher.report
            lines = [r.getMessage() for r in caplog.records if "degraded" in r.getMessage()]
            assert len(lines) == 1 and "run nixshard repair (nodes passed over: node-4)" in \
                lines[0], lines
        finally:
            if built:
                subprocess.run(["nix-store", "--delete", *built], capture_output=True,
                               env=env_with_nix_config(), check=False)

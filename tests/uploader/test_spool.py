"""The spool: nix/post-build-hook.sh writes it without the network, ``nixshard push --spool``
pushes it, retrying with backoff; the backoff schedule and spool files on their own."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nixshard.localnet import env_with_nix_config, new_publisher
from storage_network.client import NetworkClient
from storage_network.config import init_network, write_network
from tests.nix_tools import NIX_DIR
from tests.support.network import running_network
from uploader.backoff import Backoff, backoff_delay
from uploader.cli import push_command
from uploader.spool import SpoolPusher
from uploader.spool_files import (
    SpoolError,
    SpoolFile,
    SpoolFileError,
    parse_spool_file,
    prepare_spool,
    read_spool_file,
    spool_names,
    stale_temp_files,
)

from .service_support import offline_network, wait_for

HOOK = NIX_DIR / "post-build-hook.sh"
P1 = "/nix/store/" + "0" * 32 + "-hello-2.12"
P2 = "/nix/store/" + "1" * 32 + "-zlib-1.3"
DRV = "/nix/store/" + "a" * 32 + "-hello-2.12.drv"


# -- the backoff schedule -------------------------------------------------------------------

def test_backoff_delay_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, 1.0, 10.0, 1.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff_delay(10_000, 1.0, 10.0, 1.0) == 10.0  # no overflow after a long outage
    assert backoff_delay(3, 0.5, 300.0, 1.0) == 2.0


def test_backoff_jitter_stays_between_half_and_all_of_the_delay() -> None:
    assert backoff_delay(4, 1.0, 10.0, 0.0) == 4.0
    assert backoff_delay(4, 1.0, 10.0, 0.5) == 6.0
    assert backoff_delay(9, 1.0, 10.0, 0.0) == 5.0  # half the cap at least
    draws = [backoff_delay(5, 1.0, 60.0, random.Random(seed).random()) for seed in range(50)]
    assert all(8.0 <= d <= 16.0 for d in draws)
    assert len(set(draws)) == 50  # many failing items do not retry in lockstep


@pytest.mark.parametrize(("args", "message"), [
    ((0, 1.0, 10.0, 0.5), "failures must be at least 1, not 0"),
    ((1, 0.0, 10.0, 0.5), "the first retry delay must be a positive number of seconds, not 0.0"),
    ((1, 5.0, 1.0, 0.5), r"the retry delay cap \(1.0 s\) must be at least the first delay"),
    ((1, 1.0, 10.0, 1.5), r"jitter must be in \[0, 1\], not 1.5"),
])
def test_backoff_delay_refuses_bad_arguments(args: tuple[int, float, float, float],
                                             message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backoff_delay(*args)


def test_backoff_tracks_each_item_on_its_clock() -> None:
    now = [100.0]
    retry = Backoff(1.0, 4.0, clock=lambda: now[0], rand=lambda: 1.0)
    assert retry.due("a") and retry.failures("a") == 0 and retry.next_due() is None
    assert retry.failed("a") == 1.0
    assert not retry.due("a") and retry.due("b")
    assert retry.next_due() == 1.0
    now[0] += 0.99
    assert not retry.due("a")
    now[0] += 0.01
    assert retry.due("a") and retry.next_due() == 0.0
    assert [retry.failed("a") for _ in range(3)] == [2.0, 4.0, 4.0]
    assert retry.failures("a") == 4
    retry.failed("b")
    retry.keep_only(["b"])  # "a" left the spool
    assert retry.failures("a") == 0 and retry.due("a") and retry.failures("b") == 1
    retry.succeeded("b")
    assert retry.due("b") and retry.next_due() is None
    with pytest.raises(ValueError, match="must be at least the first delay"):
        Backoff(10.0, 1.0)


# -- spool files ----------------------------------------------------------------------------

def test_parse_spool_file() -> None:
    text = f"{P1}\n\n{P2}\n{P1}\n  # a comment\n# DRV_PATH={DRV}\n"
    assert parse_spool_file("1-2.paths", text) == SpoolFile("1-2.paths", (P1, P2), DRV)
    assert parse_spool_file("1-2.paths", P1) == SpoolFile("1-2.paths", (P1,), None)
    with pytest.raises(SpoolFileError, match="spool file x.paths, line 2: .*not in the Nix store"):
        parse_spool_file("x.paths", f"{P1}\n/tmp/{'0' * 32}-x\n")
    with pytest.raises(SpoolFileError, match="line 1: .*components after the store path"):
        parse_spool_file("x.paths", f"{P1}/bin/hello\n")
    with pytest.raises(SpoolFileError, match=r"line 1: '\*' is too short to be a valid store path"):
        parse_spool_file("x.paths", "/nix/store/*\n")
    with pytest.raises(SpoolFileError, match="spool file x.paths lists no store path"):
        parse_spool_file("x.paths", f"# DRV_PATH={DRV}\n\n")


def test_read_spool_file_refuses_what_no_hook_writes(tmp_path: Path) -> None:
    prepare_spool(str(tmp_path))
    (tmp_path / "new" / "big.paths").write_text(P1 + "\n" + " " * (1 << 20))
    (tmp_path / "new" / "bin.paths").write_bytes(b"\xff\xfe\n")
    with pytest.raises(SpoolFileError, match="big.paths is larger than 1048576 bytes"):
        read_spool_file(str(tmp_path), "big.paths")
    with pytest.raises(SpoolFileError, match="bin.paths is not UTF-8 text"):
        read_spool_file(str(tmp_path), "bin.paths")
    with pytest.raises(FileNotFoundError):
        read_spool_file(str(tmp_path), "gone.paths")


def test_spool_names_are_the_complete_files_oldest_first(tmp_path: Path) -> None:
    prepare_spool(str(tmp_path))
    new, tmp = tmp_path / "new", tmp_path / "tmp"
    for name in ("1000-7.paths", "999-3.paths", "1000-12.paths", ".hidden.paths", "notes.txt"):
        (new / name).write_text(P1 + "\n")
    (tmp / "5-5.paths").write_text(P1 + "\n")  # still being written by a hook
    assert spool_names(str(tmp_path)) == ["999-3.paths", "1000-12.paths", "1000-7.paths"]
    assert stale_temp_files(str(tmp_path)) == []
    assert stale_temp_files(str(tmp_path), now=time.time() + 7200) == ["5-5.paths"]
    with pytest.raises(SpoolError, match="cannot list the spool directory .*/none/new"):
        spool_names(str(tmp_path / "none"))


def run_hook(env: dict[str, str], path_prefix: Path | None = None,
             wrapper: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """The real hook with ``env`` (and ``path_prefix`` first on PATH), under ``wrapper``."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("OUT_PATHS", "DRV_PATH", "NIXSHARD_SPOOL_DIR")}
    if path_prefix is not None:
        base["PATH"] = f"{path_prefix}:{base['PATH']}"
    return subprocess.run([*wrapper, str(HOOK)], env={**base, **env}, capture_output=True,
                          text=True, check=False, timeout=60)


def fake_command(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_a_hook_killed_before_its_rename_leaves_no_file_to_push(tmp_path: Path) -> None:
    """A crash between the temp write and the rename: nothing half-written shows in new/."""
    spool = tmp_path / "spool"
    # `mv` that kills the hook (SIGKILL, as a crash) at the moment it would rename
    fake_command(tmp_path / "bin", "mv", 'kill -9 "$PPID"\nexit 1\n')
    env = {"NIXSHARD_SPOOL_DIR": str(spool), "OUT_PATHS": f"{P1} {P2}", "DRV_PATH": DRV}
    proc = run_hook(env, tmp_path / "bin")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert spool_names(str(spool)) == []
    (left,) = os.listdir(spool / "tmp")
    assert (spool / "tmp" / left).read_text() == f"{P1}\n{P2}\n# DRV_PATH={DRV}\n"
    assert stale_temp_files(str(spool), now=time.time() + 7200) == [left]

    proc = run_hook(env)  # the next build's hook is not bothered by the leftover
    assert proc.returncode == 0, proc.stderr
    (name,) = spool_names(str(spool))
    assert read_spool_file(str(spool), name) == SpoolFile(name, (P1, P2), DRV)


# -- the service, without a network to reach -------------------------------------------------

def test_files_no_push_can_ever_take_are_rejected_with_one_line_each(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = tmp_path / "spool"
    prepare_spool(str(spool))
    (spool / "new" / "1-1.paths").write_text("not a store path\n")
    (spool / "new" / "2-2.paths").write_text(f"{P1}\n{P2}\n")  # garbage-collected since
    network, nix_key, publisher = offline_network("spool-tests-1")

    async def run() -> SpoolPusher:
        async with NetworkClient(network) as net:
            pusher = SpoolPusher(net, nix_key, publisher, str(spool))
            assert await pusher.round() is False
            assert await pusher.round() is False  # nothing left to try
            return pusher

    with caplog.at_level("INFO", logger="nixshard.push"):
        pusher = asyncio.run(run())
    assert [r.getMessage() for r in caplog.records] == [
        f"rejected spool file 1-1.paths (moved to {spool}/rejected/1-1.paths): spool file "
        "1-1.paths, line 1: path 'not a store path' is not in the Nix store '/nix/store'",
        f"rejected spool file 2-2.paths (moved to {spool}/rejected/2-2.paths): its store "
        f"paths are gone from the store (garbage-collected?): {P1} {P2}"]
    assert sorted(os.listdir(spool / "rejected")) == ["1-1.paths", "2-2.paths"]
    assert spool_names(str(spool)) == []
    assert pusher.report.rounds == 1 and pusher.report.rejected == ["1-1.paths", "2-2.paths"]


@pytest.mark.nix
def test_a_file_the_network_refuses_stays_and_waits_for_its_backoff(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No node answers: the file is kept, tried again only when its backoff allows."""
    tree = tmp_path / "nixshard-spool-backoff"
    tree.mkdir()
    (tree / "f").write_text(f"{time.time_ns()}\n")
    path = nix("nix-store", "--add", str(tree))
    spool = tmp_path / "spool"
    prepare_spool(str(spool))
    (spool / "new" / "3-3.paths").write_text(f"{path}\n{P2}\n# DRV_PATH={DRV}\n")
    network, nix_key, publisher = offline_network("spool-tests-1")
    now = [0.0]
    retry = Backoff(10.0, 100.0, clock=lambda: now[0], rand=lambda: 1.0)

    async def run() -> SpoolPusher:
        async with NetworkClient(network) as net:
            pusher = SpoolPusher(net, nix_key, publisher, str(spool), retry=retry)
            await pusher.round()
            assert retry.failures("3-3.paths") == 1
            await pusher.round()  # not due yet: not tried
            now[0] = 10.0
            await pusher.round()
            return pusher

    try:
        with caplog.at_level("INFO", logger="nixshard.push"):
            pusher = asyncio.run(run())
    finally:
        subprocess.run(["nix-store", "--delete", path], capture_output=True,
                       env=env_with_nix_config(), check=False)
    lines = [r.getMessage() for r in caplog.records if "3-3.paths" in r.getMessage()]
    gone = f"spool file 3-3.paths: left out 1 store paths gone from the store " \
           f"(garbage-collected?): {P2}"
    assert [line.split(f": {path}: ")[0] for line in lines] == [
        gone, "not pushed spool file 3-3.paths (failure 1, next try in 10.0 s)",
        gone, "not pushed spool file 3-3.paths (failure 2, next try in 20.0 s)"], lines
    assert spool_names(str(spool)) == ["3-3.paths"]  # kept until pushed
    assert pusher.report.rounds == 2 and pusher.report.files_pushed == 0
    assert path in pusher.report.failures["3-3.paths"]


@pytest.mark.parametrize(("args", "message"), [
    (["--spool", "D", "/nix/store/" + "0" * 32 + "-x"], "give STORE_PATHS or --spool, not both"),
    (["--watch-store", "--spool", "D"], "give --watch-store or --spool, not both"),
    (["--spool", "D", "--push-existing"], "--push-existing applies only with --watch-store"),
    (["--spool", "D", "--store-dir", "/tmp"], "--store-dir applies only with --watch-store"),
    (["--retry-delay", "5", "/nix/store/" + "0" * 32 + "-x"],
     "--retry-delay applies only with --watch-store or --spool"),
    (["--spool", "D", "--retry-delay", "10", "--retry-max-delay", "5"],
     "--retry-max-delay (5 s) is below --retry-delay (10 s)"),
    (["--spool", "D", "--retry-delay", "0"], "0 is not in the range x>0"),
    ([], "or --spool DIR to push what nix/post-build-hook.sh spools"),
])
def test_spool_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(push_command, ["--network", str(tmp_path / "unread.toml"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr


def test_a_spool_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    publisher, secret = new_publisher("spool-tests-1")
    urls = [f"http://127.0.0.1:{9 + i}" for i in range(6)]
    write_network(init_network(urls, 4, 2, [publisher.public]), tmp_path / "network.toml")
    (tmp_path / "sk").write_text(secret)
    (tmp_path / "file").write_text("")
    res = CliRunner().invoke(push_command, ["--network", str(tmp_path / "network.toml"),
                                            "--signing-key", str(tmp_path / "sk"),
                                            "--spool", str(tmp_path / "file" / "spool")])
    assert res.exit_code == 1, res.output
    assert (f"cannot create the spool directory {tmp_path}/file/spool/new: Not a directory"
            in res.stderr)


# -- the whole thing: real hook, real nix, real nodes ----------------------------------------

# Two derivations built by /bin/sh; top refers to lib. STAMP makes them new paths.
EXPR = (
    'let mk = name: script: derivation { inherit name; system = builtins.currentSystem;'
    ' builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" script ]; };'
    ' lib = mk "nixshard-spool-lib" "mkdir -p $out; echo STAMP > $out/stamp";'
    ' in mk "nixshard-spool-top" "mkdir -p $out; echo ${lib} > $out/lib; echo STAMP > $out/s"'
)


def nix(*args: str) -> str:
    """stdout of a nix command run with the test NIX_CONFIG (its stderr on failure)."""
    done = subprocess.run(list(args), capture_output=True, text=True, env=env_with_nix_config(),
                          check=False)
    assert done.returncode == 0, f"{' '.join(args[:3])}: {done.stderr[-3000:]}"
    return done.stdout.strip()


def network_calls(trace: Path) -> list[str]:
    """The IPv4/IPv6 socket and connect calls in an ``strace -o`` file.

    Unix-domain sockets are local (the C library asks nscd at /var/run/nscd/socket
    for user names on some machines) and are not network calls.
    """
    return [line for line in trace.read_text().splitlines()
            if ("socket(" in line or "connect(" in line) and "AF_INET" in line]


def test_network_calls_keeps_inet_and_drops_unix_sockets(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.write_text(
        '1 socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK, 0) = 3\n'
        '1 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT\n'
        '1 socket(AF_INET6, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_TCP) = 4\n'
        '1 connect(4, {sa_family=AF_INET, sin_port=htons(80), '
        'sin_addr=inet_addr("127.0.0.1")}, 16) = 0\n')
    assert [line.split()[1].split("(")[0] for line in network_calls(trace)] == ["socket", "connect"]


def start_spool_service(network_file: Path, key: Path, spool: Path, log: Path,
                        out: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as err, open(out, "wb") as stdout:
        return subprocess.Popen(
            [sys.executable, "-m", "nixshard", "push", "--spool", str(spool),
             "--network", str(network_file), "--signing-key", str(key),
             "--watch-interval", "0.2", "--retry-delay", "0.2", "--retry-max-delay", "1"],
            stdout=stdout, stderr=err, stdin=subprocess.DEVNULL, env=env_with_nix_config())


def stop(service: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, and the service exits 0."""
    service.send_signal(signal.SIGTERM)
    assert service.wait(timeout=120) == 0, log.read_text()


@pytest.mark.nix
def test_the_hook_spools_offline_and_the_service_pushes_once_nodes_are_up(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    assert strace, "strace is needed (scripts/test.sh installs it): the test proves the " \
                   "hook opens no connection"
    publisher, secret = new_publisher("spool-e2e-1")
    key = tmp_path / "secret.key"
    key.write_text(secret)
    spool, log, out = tmp_path / "spool", tmp_path / "spool.log", tmp_path / "spool.out"
    built: list[str] = []
    service: subprocess.Popen[bytes] | None = None
    with running_network(tmp_path / "net", publisher=publisher) as local:
        assert local.network is not None
        for node in local.nodes:
            node.stop()  # every node down
        try:
            top = nix("nix-build", "--no-out-link", "-E",
                      EXPR.replace("STAMP", f"{time.time_ns()}")).splitlines()[-1]
            lib = (Path(top) / "lib").read_text().strip()
            drv = nix("nix-store", "--query", "--deriver", top)
            built += [top, lib]

            # The hook: exit 0, its file spooled, no socket, no `nixshard` run.
            called = tmp_path / "nixshard-was-called"
            fake_command(tmp_path / "bin", "nixshard", f'touch "{called}"\nexit 0\n')
            trace = tmp_path / "hook.trace"
            wrapper = (strace, "-f", "-qq", "-e", "trace=socket,connect", "-o", str(trace))
            # the check itself sees a connection when there is one
            subprocess.run([*wrapper, "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9"],
                           capture_output=True, check=False)
            assert network_calls(trace), trace.read_text()
            proc = run_hook({"NIXSHARD_SPOOL_DIR": str(spool), "OUT_PATHS": top,
                             "DRV_PATH": drv}, tmp_path / "bin", wrapper)
            assert proc.returncode == 0, proc.stderr
            assert network_calls(trace) == []
            assert not called.exists()
            (name,) = spool_names(str(spool))
            assert f"spooled {top} (built from {drv}) as {spool}/new/{name}" in proc.stderr
            assert read_spool_file(str(spool), name) == SpoolFile(name, (top,), drv)

            # The service while every node is down: the file fails, waits, and stays.
            service = start_spool_service(local.network_file, key, spool, log, out)
            wait_for("a failed try", lambda: log.read_text().count(
                f"not pushed spool file {name} (failure") >= 2 or service.poll() is not None)
            stop(service, log)
            assert spool_names(str(spool)) == [name]
            assert out.read_text() == (f"spool stopped: 0 spool files pushed, 0 records "
                                       f"written, 1 files left in {spool}/new\n")

            # Nodes up, the service again: what was left is pushed, then the file deleted.
            for node in local.nodes:
                node.start()
            for node in local.nodes:
                node.wait_ready()
            service = start_spool_service(local.network_file, key, spool, log, out)
            wait_for("the spool to empty",
                     lambda: not spool_names(str(spool)) or service.poll() is not None)
            stop(service, log)
            text = log.read_text()
            assert f"pushed spool file {name}: {top} (built from {drv})" in text
            assert "SIGTERM: stopping once the push in progress is done" in text
            assert out.read_text() == (f"spool stopped: 1 spool files pushed, 2 records "
                                       f"written, 0 files left in {spool}/new\n")

            # A Nix client gets the closure from a gateway, signatures checked.
            gateway = local.start_daemon()
            dest = tmp_path / "copy"
            trusted = ("--option", "trusted-public-keys", publisher.public.text())
            nix("nix", "copy", "--from", gateway, "--to", str(dest), *trusted, top)
            nix("nix", "store", "verify", "--store", str(dest), "-r", *trusted, top)
            copied = nix("nix", "path-info", "--store", str(dest), "-r", top).split()
            assert sorted(copied) == sorted([top, lib])
        finally:
            if service is not None and service.poll() is None:
                service.kill()
                service.wait()
            if built:  # this test's own paths: keep the shared store small
                subprocess.run(["nix-store", "--delete", *built], capture_output=True,
                               env=env_with_nix_config(), check=False)

"""The acceptance flow of the gateway issue on the real nix binary and real processes.

- ``nix copy --to http://gateway`` of a 3-path closure with a netrc credential
  works; without it the upload is refused with 401 and nothing is stored;
- a second gateway with an empty local cache serves the closure to
  ``nix copy --from`` and ``nix store verify -r`` passes;
- a path only an upstream has (a ``nix copy --to file://`` cache served by a
  second HTTP server) is served through the gateway, accepted by Nix, and
  ingested into the network;
- a NAR download cut halfway is resumed with a Range request and matches
  the NarHash; ``/metrics`` counters move.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zstandard

from nix_formats.hash import parse_nix_hash
from nix_formats.narinfo import NarInfo
from nix_formats.store_path import StorePath
from nixshard.demo import build_closure
from nixshard.localnet import LocalNetwork, free_port
from tests.support.metrics import scrape

from .conftest import GATEWAY_WORKERS, NixKey, nix

pytestmark = pytest.mark.nix
USER, PASSWORD = "ci", "gateway-pass"


def hash_part(path: str) -> str:
    return StorePath.parse(path).hash_part


def closure_of(paths: list[str]) -> list[str]:
    return nix("nix-store", "-qR", *paths).stdout.split()


def copy_to(url: str, key: NixKey, netrc: Path, paths: list[str]
            ) -> subprocess.CompletedProcess[str]:
    return nix("nix", "copy", "--to", f"{url}?compression=zstd&secret-key={key.secret_file}",
               "--option", "netrc-file", str(netrc), *paths, check=False)


def copy_from(url: str, public: str, dest: Path, paths: list[str]) -> None:
    nix("nix", "copy", "--from", url, "--to", str(dest),
        "--option", "trusted-public-keys", public, *paths)
    nix("nix", "store", "verify", "--store", str(dest), "-r",
        "--option", "trusted-public-keys", public, *paths)


def build_logged(stamp: str) -> str:
    """A fresh path whose build writes a log."""
    expr = ('derivation { name = "nixshard-logged"; system = builtins.currentSystem; '
            'builder = "/bin/sh"; args = [ "-c" "echo building the logged path ' + stamp +
            '; echo second line; echo done > $out" ]; }')
    return nix("nix-build", "--no-out-link", "-E", expr).stdout.strip().splitlines()[-1]


@pytest.fixture
def gateway_net(tmp_path: Path, nix_key: NixKey) -> Iterator[LocalNetwork]:
    """6 nodes (4-of-6) and gateway ``gw`` accepting uploads from USER."""
    publisher = nix_key.publisher
    creds = tmp_path / "credentials"
    creds.write_text(f"{USER}:{PASSWORD}\n")
    with LocalNetwork(tmp_path, publisher, workers=GATEWAY_WORKERS) as net:
        net.start_nodes(6, 4, 2)
        net.start_gateway("gw", extra=("--signing-key", str(nix_key.secret_file),
                                       "--upload-credentials", str(creds)))
        yield net


def test_nix_copy_to_the_gateway_and_back(gateway_net: LocalNetwork, nix_key: NixKey,
                                          tmp_path: Path) -> None:
    gw = gateway_net.gateways[0]
    roots = [*build_closure("gateway-acceptance"), build_logged(str(time.time_ns()))]
    paths = closure_of(roots)
    assert len(paths) >= 3
    no_creds = tmp_path / "empty.netrc"
    no_creds.write_text("")
    refused = copy_to(gw.url, nix_key, no_creds, roots)
    assert refused.returncode != 0
    assert "401" in refused.stderr, refused.stderr
    for path in paths:  # nothing stored, nothing visible
        assert httpx.get(f"{gw.url}/{hash_part(path)}.narinfo", timeout=30).status_code == 404

    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {USER} password {PASSWORD}\n")
    done = copy_to(gw.url, nix_key, netrc, roots)
    assert done.returncode == 0, done.stderr

    # build logs: nix store copy-log uploads, nix log reads through another gateway
    copied = nix("nix", "store", "copy-log", "--to", gw.url, "--option", "netrc-file",
                 str(netrc), roots[-1], check=False)
    assert copied.returncode == 0, copied.stderr
    local_log = nix("nix", "log", roots[-1]).stdout
    assert "building the logged path" in local_log

    second = gateway_net.start_gateway("gw2")  # empty local cache
    copy_from(second.url, nix_key.public, tmp_path / "store2", roots)
    remote_log = nix("nix", "log", "--store", second.url, roots[-1])
    assert local_log and remote_log.stdout == local_log
    assert scrape(second.url, "nixshard_gateway_nar_cache_total", result="miss") >= len(paths)

    # a download cut halfway, resumed with Range, matches the NarHash
    info = NarInfo.parse(httpx.get(f"{second.url}/{hash_part(roots[0])}.narinfo",
                                   timeout=30).text)
    url = f"{second.url}/{info.url}"
    total = int(httpx.head(url, timeout=30).headers["Content-Length"])
    half = total // 2
    first = b""
    with httpx.stream("GET", url, timeout=30) as resp:
        for piece in resp.iter_raw(max(1, half // 4)):
            first += piece
            if len(first) >= half:
                break  # hang up midway
    rest = httpx.get(url, headers={"Range": f"bytes={len(first)}-"}, timeout=30)
    assert rest.status_code == 206
    nar = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(
        first + rest.content)
    assert hashlib.sha256(nar).digest() == parse_nix_hash(info.nar_hash)[1]
    assert len(nar) == info.nar_size


@pytest.fixture
def upstream_cache(tmp_path: Path) -> Iterator[tuple[str, str, list[str]]]:
    """A ``nix copy --to file://`` cache of a fresh path, signed by its own key, served by
    ``python -m http.server``: (URL, public key, the path's closure)."""
    nix("nix-store", "--generate-binary-cache-key", "upstream-test-1",
        str(tmp_path / "up.sk"), str(tmp_path / "up.pk"))
    roots = build_closure("upstream-only")
    cache = tmp_path / "upstream-cache"
    nix("nix", "copy", "--to",
        f"file://{cache}?compression=xz&secret-key={tmp_path / 'up.sk'}", *roots)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(cache)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/nix-cache-info", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url, (tmp_path / "up.pk").read_text().strip(), closure_of(roots)
    finally:
        server.terminate()
        server.wait()


def test_a_path_only_the_upstream_has(tmp_path: Path, nix_key: NixKey,
                                      upstream_cache: tuple[str, str, list[str]]) -> None:
    upstream_url, upstream_key, paths = upstream_cache
    publisher = nix_key.publisher
    with LocalNetwork(tmp_path / "net", publisher, workers=GATEWAY_WORKERS) as net:
        net.start_nodes(6, 4, 2)
        # through a gateway that does not ingest, the NAR comes from /upstream/0/, Range too
        proxy = net.start_gateway("proxy-gw", extra=(
            "--upstream", upstream_url, "--upstream-key", upstream_key))
        served = NarInfo.parse(httpx.get(f"{proxy.url}/{hash_part(paths[0])}.narinfo",
                                         timeout=30).text)
        assert served.url.startswith("upstream/0/nar/")
        original = (tmp_path / "upstream-cache" / served.url.removeprefix("upstream/0/"))
        whole = httpx.get(f"{proxy.url}/{served.url}", timeout=30)
        assert whole.status_code == 200 and whole.content == original.read_bytes()
        # the Range header is forwarded; python's http.server ignores it and answers 200
        # with the whole file, which the gateway passes through as it is
        ranged = httpx.get(f"{proxy.url}/{served.url}", headers={"Range": "bytes=10-"},
                           timeout=30)
        assert ranged.status_code == 200 and ranged.content == original.read_bytes()
        assert httpx.get(f"{proxy.url}/upstream/0/nar/%2E%2E/x.nar",
                         timeout=30).status_code == 400
        assert httpx.get(f"{proxy.url}/upstream/0/nar/{'a' * 52}.nar.xz",
                         timeout=30).status_code == 404
        assert httpx.get(f"{proxy.url}/upstream/7/nar/x.nar", timeout=30).status_code == 400

        gw = net.start_gateway("up-gw", extra=(
            "--upstream", upstream_url, "--upstream-key", upstream_key,
            "--ingest-upstream", "--signing-key", str(nix_key.secret_file)))
        copy_from(gw.url, upstream_key, tmp_path / "store", paths)
        assert scrape(gw.url, "nixshard_gateway_upstream_total", result="hit") >= len(paths)
        # the gateway copies it into the network: another gateway without upstreams sees it
        plain = net.start_gateway("plain-gw")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            statuses = [httpx.get(f"{plain.url}/{hash_part(p)}.narinfo", timeout=30).status_code
                        for p in paths]
            if statuses == [200] * len(paths):
                break
            time.sleep(0.2)
        assert statuses == [200] * len(paths)
        copy_from(plain.url, upstream_key, tmp_path / "store-from-network", paths)
        other = "0" * 31 + "1"
        assert httpx.get(f"{gw.url}/{other}.narinfo", timeout=30).status_code == 404
        # upstream down: a miss is a 404 (logged and counted), not an error that fails builds
        down = net.start_gateway("down-gw", extra=(
            "--upstream", f"http://127.0.0.1:{free_port()}", "--upstream-key", upstream_key))
        assert httpx.get(f"{down.url}/{other}.narinfo", timeout=30).status_code == 404
        assert scrape(down.url, "nixshard_gateway_upstream_total", result="down") == 1
        # paths in the network are still served while the upstream is down
        assert httpx.get(f"{down.url}/{hash_part(paths[0])}.narinfo",
                         timeout=30).status_code == 200

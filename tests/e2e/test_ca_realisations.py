"""Realisations of content-addressed derivations through the gateway, with the real Nix 2.8.

A CA derivation ``top`` depending on a CA derivation ``dep`` (``__contentAddressed``,
builder /bin/sh) is built with ``secret-key-files`` (Nix signs realisations at
build time), ``nix copy --to`` the gateway with netrc credentials (Nix PUTs
``realisations/<id>.doi`` after the paths, dependencies first), then:

- another gateway serves both ``.doi`` files equal to ``nix realisation info``;
- ``nix copy --from`` it into a fresh store registers the realisations (Nix
  checks their signatures against ``trusted-public-keys`` there);
- ``nix build --store <fresh> --substituters <gateway>`` substitutes ``top``
  through its realisation: ``top`` writes a random value, so a rebuild would
  give another output path.

Unsigned realisations are refused (403, ``nix copy`` fails) unless the
gateway runs with ``--sign-uploads``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from nix_formats.keys import PublicKey
from nix_formats.realisation import Realisation
from nixshard.localnet import LocalNetwork, ManagedProcess, env_with_nix_config

from .conftest import GATEWAY_WORKERS, NixKey

pytestmark = pytest.mark.nix
USER, PASSWORD = "ci", "realisation-pass"
CA = 'outputHashMode = "recursive"; outputHashAlgo = "sha256"; __contentAddressed = true;'
EXPR = """{ stamp }: rec {
  dep = derivation { name = "nixshard-ca-dep"; system = builtins.currentSystem;
    builder = "/bin/sh"; args = [ "-c" "echo dep ${stamp} > $out" ]; CA };
  top = derivation { name = "nixshard-ca-top"; system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "read u < /proc/sys/kernel/random/uuid; echo ${dep} $u > $out" ]; CA };
}
""".replace("CA", CA)


def canix(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run nix with the test NIX_CONFIG and ``ca-derivations`` on."""
    env = env_with_nix_config()
    env["NIX_CONFIG"] += "extra-experimental-features = ca-derivations\n"
    done = subprocess.run(list(args), capture_output=True, text=True, env=env, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(args[:3])} ... exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


@dataclass(frozen=True)
class Built:
    """The two CA derivations of :data:`EXPR` built for one stamp."""

    file: Path
    stamp: str
    drvs: dict[str, str]  # attribute -> .drv path
    outs: dict[str, str]  # attribute -> output path

    def args(self, *attrs: str) -> list[str]:
        """``-f FILE --argstr stamp S ATTR...`` for nix."""
        return ["-f", str(self.file), "--argstr", "stamp", self.stamp, *attrs]


def build(tmp_path: Path, *nix_args: str) -> Built:
    """Build ``dep`` and ``top`` of a fresh stamp (``nix_args`` added to ``nix build``)."""
    file = tmp_path / "ca.nix"
    file.write_text(EXPR)
    stamp = str(time.time_ns())
    args = ["-f", str(file), "--argstr", "stamp", stamp]
    out = json.loads(canix("nix", "build", "--no-link", "--json", *args, "dep", "top",
                           *nix_args).stdout)
    drvs = {attr: entry["drvPath"] for attr, entry in zip(("dep", "top"), out, strict=True)}
    outs = {attr: entry["outputs"]["out"] for attr, entry in zip(("dep", "top"), out,
                                                                  strict=True)}
    return Built(file, stamp, drvs, outs)


def realisation_info(built: Built, *store: str) -> dict[str, dict[str, Any]]:
    """attribute -> ``nix realisation info --json`` of its ``out``."""
    entries = json.loads(canix("nix", "realisation", "info", "--json", *store,
                               built.drvs["dep"], built.drvs["top"]).stdout)
    by_path = {e["outPath"]: e for e in entries}
    return {attr: by_path[Path(out).name] for attr, out in built.outs.items()}


def copy_to(url: str, key: NixKey, netrc: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return canix("nix", "copy", "--to", f"{url}?compression=zstd&secret-key={key.secret_file}",
                 "--option", "netrc-file", str(netrc), *args, check=False)


def doi(url: str, info: dict[str, Any]) -> httpx.Response:
    return httpx.get(f"{url}/realisations/{info['id']}.doi", timeout=30)


@dataclass(frozen=True)
class Net:
    local: LocalNetwork
    gateway: ManagedProcess
    netrc: Path
    credentials: Path


@pytest.fixture
def net(tmp_path: Path, nix_key: NixKey) -> Iterator[Net]:
    """6 nodes (4-of-6) and a gateway accepting uploads from USER, signed with the nix key."""
    credentials = tmp_path / "credentials"
    credentials.write_text(f"{USER}:{PASSWORD}\n")
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {USER} password {PASSWORD}\n")
    with LocalNetwork(tmp_path / "net", nix_key.publisher, workers=GATEWAY_WORKERS) as local:
        local.start_nodes(6, 4, 2)
        gateway = local.start_gateway("gw", extra=(
            "--signing-key", str(nix_key.secret_file), "--upload-credentials", str(credentials)))
        yield Net(local, gateway, netrc, credentials)


def test_realisations_round_trip_through_the_network(net: Net, nix_key: NixKey,
                                                     tmp_path: Path) -> None:
    built = build(tmp_path, "--option", "secret-key-files", str(nix_key.secret_file))
    local = realisation_info(built)
    assert local["dep"]["signatures"] and local["top"]["signatures"]
    assert local["top"]["dependentRealisations"] == {local["dep"]["id"]: local["dep"]["outPath"]}

    gw = net.gateway.url
    assert all(doi(gw, info).status_code == 404 for info in local.values())
    done = copy_to(gw, nix_key, net.netrc, built.drvs["top"])  # outputs + realisations
    assert done.returncode == 0, done.stderr
    drvs = copy_to(gw, nix_key, net.netrc, "--derivation", built.drvs["top"])
    assert drvs.returncode == 0, drvs.stderr

    reader = net.local.start_gateway("reader").url  # another gateway, no uploads
    for attr, info in local.items():
        resp = doi(reader, info)
        assert resp.status_code == 200, (attr, resp.text)
        assert resp.headers["Content-Type"].startswith("application/json")
        assert resp.json() == info
        assert Realisation.parse(resp.content).signed_by([PublicKey.parse(nix_key.public)])

    # nix copy --from registers the realisations after checking their signatures
    fresh = tmp_path / "fresh"
    trust = ("--option", "trusted-public-keys", nix_key.public)
    canix("nix", "copy", "--from", reader, "--to", str(fresh), *trust, built.drvs["top"])
    canix("nix", "copy", "--derivation", "--from", reader, "--to", str(fresh), *trust,
          built.drvs["top"])
    assert realisation_info(built, "--store", str(fresh)) == local

    # substitution: Nix asks for the realisation and fetches the same output path (a
    # rebuild would have written another random value, so another path)
    subst = tmp_path / "subst"
    out = json.loads(canix("nix", "build", "--no-link", "--json", "--store", str(subst),
                           "--substituters", reader, *trust, *built.args("top")).stdout)
    assert out[0]["outputs"]["out"] == built.outs["top"]
    assert (subst / built.outs["top"].lstrip("/")).read_text().startswith(built.outs["dep"])
    assert realisation_info(built, "--store", str(subst)) == local


def test_unsigned_realisations_need_sign_uploads(net: Net, nix_key: NixKey,
                                                 tmp_path: Path) -> None:
    built = build(tmp_path)  # no secret-key-files: Nix leaves its realisations unsigned
    local = realisation_info(built)
    assert local["dep"]["signatures"] == [] and local["top"]["signatures"] == []

    refused = copy_to(net.gateway.url, nix_key, net.netrc, built.drvs["top"])
    assert refused.returncode != 0
    assert "403" in refused.stderr, refused.stderr
    assert all(doi(net.gateway.url, info).status_code == 404 for info in local.values())

    signer = net.local.start_gateway("signer", extra=(
        "--signing-key", str(nix_key.secret_file), "--upload-credentials",
        str(net.credentials), "--sign-uploads")).url
    done = copy_to(signer, nix_key, net.netrc, built.drvs["top"])
    assert done.returncode == 0, done.stderr
    for info in local.values():
        served = Realisation.parse(doi(net.gateway.url, info).content)
        assert served.out_path.basename == info["outPath"]
        assert served.signed_by([PublicKey.parse(nix_key.public)]) == [nix_key.public.split(":")[0]]

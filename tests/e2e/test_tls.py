"""TLS end to end on the real nix: HTTPS nodes, an HTTPS gateway, ``nix copy --from https://``.

Six nodes serve HTTPS (``nixshard node --tls-cert/--tls-key``, ``https://`` URLs in the
network file), the gateway too (``nixshard serve --tls-cert/--tls-key``); every
certificate is signed by a test CA (``tests/support/tls.py``). ``nixshard push`` and the
gateway trust it through ``SSL_CERT_FILE``, Nix through ``NIX_SSL_CERT_FILE`` (Nix 2.8.0
here ignores ``--option ssl-cert-file`` for downloads; the variable works).
A closure is pushed, copied from the gateway into a fresh store and verified.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nixshard.demo import build_closure
from nixshard.localnet import LocalNetwork, ManagedProcess, free_port
from tests.support.tls import TestCerts, make_certs

from .conftest import GATEWAY_WORKERS, NixKey, nar_hashes, nix

pytestmark = pytest.mark.nix


@pytest.fixture
def tls_net(tmp_path: Path, nix_key: NixKey, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[tuple[LocalNetwork, ManagedProcess, TestCerts]]:
    """HTTPS nodes (4-of-6) and an HTTPS gateway, all trusting the test CA."""
    certs = make_certs(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))  # every process started inherits it
    tls = ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
    with LocalNetwork(tmp_path / "net", nix_key.publisher, workers=GATEWAY_WORKERS) as net:
        net.start_nodes(6, 4, 2, node_args={i: tls for i in range(1, 7)})
        assert net.network is not None
        assert all(node.url.startswith("https://") for node in net.network.nodes)
        port = free_port()
        gateway = ManagedProcess("tls-gateway", [
            "serve", "--network", str(net.network_file), "--listen", f"127.0.0.1:{port}",
            "--cache-dir", str(tmp_path / "gw-cache"), "--workers", str(GATEWAY_WORKERS), *tls],
            f"https://127.0.0.1:{port}", tmp_path / "tls-gateway.log")
        net.gateways.append(gateway)
        gateway.start().wait_ready()
        yield net, gateway, certs


def test_nix_copies_from_an_https_gateway_on_https_nodes(
        tls_net: tuple[LocalNetwork, ManagedProcess, TestCerts], nix_key: NixKey,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net, gateway, certs = tls_net
    roots = build_closure(f"tls-{tmp_path.name}")
    res = net.run_nixshard("push", "--network", str(net.network_file), "--signing-key",
                           str(nix_key.secret_file), "--no-progress", *roots)
    assert res.returncode == 0, res.stdout + res.stderr
    refused = nix("nix", "copy", "--from", gateway.url, "--to", str(tmp_path / "untrusted"),
                  "--option", "trusted-public-keys", nix_key.public, *roots, check=False)
    assert refused.returncode != 0  # without the test CA, Nix refuses the certificate
    assert "SSL peer certificate" in refused.stderr
    monkeypatch.setenv("NIX_SSL_CERT_FILE", str(certs.ca))
    dest = tmp_path / "copy"
    nix("nix", "copy", "--from", gateway.url, "--to", str(dest), "--option",
        "trusted-public-keys", nix_key.public, *roots)
    nix("nix", "store", "verify", "--store", str(dest), "-r", "--option",
        "trusted-public-keys", nix_key.public, *roots)
    assert nar_hashes(dest, roots) == nar_hashes(None, roots)
    assert "serving HTTPS" in gateway.log_path.read_text()

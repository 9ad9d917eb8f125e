"""``nixshard push --pin NAME [--pin-keep N]``: a pushed closure pinned under NAME.

Real nix paths (``nixshard.demo.build_closure``), 6 node processes, 4-of-6
(``local_net`` of tests/e2e/conftest.py).
"""

from __future__ import annotations

import json
import time

import pytest

from nixshard.demo import build_closure
from nixshard.localnet import LocalNetwork

from .conftest import NixKey, nixshard

pytestmark = pytest.mark.nix


def pin_list(net: LocalNetwork, name: str) -> list[str]:
    """The paths of pin ``name``, newest first."""
    res = nixshard("pin", "list", "--network", str(net.network_file), "--json", name)
    assert res.returncode == 0, res.stderr
    pins = json.loads(res.stdout)["pins"]
    assert [p["name"] for p in pins] == [name]
    return list(pins[0]["paths"])


def push_pinned(net: LocalNetwork, key: NixKey, path: str, *extra: str) -> str:
    res = nixshard("push", "--network", str(net.network_file), "--signing-key",
                   str(key.secret_file), "--no-progress", "--pin", "ci/main", *extra, path)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_push_pins_what_it_pushed_and_keeps_the_newest(local_net: LocalNetwork,
                                                        nix_key: NixKey) -> None:
    first = build_closure(f"pin-a-{time.time_ns()}")[0]
    second = build_closure(f"pin-b-{time.time_ns()}")[0]
    out = push_pinned(local_net, nix_key, first)
    assert f"pinned under ci/main: {first}" in out
    assert pin_list(local_net, "ci/main") == [first]
    out = push_pinned(local_net, nix_key, second, "--pin-keep", "1")
    assert f"dropped {first}" in out
    assert pin_list(local_net, "ci/main") == [second]


def test_pin_options_are_checked(local_net: LocalNetwork, nix_key: NixKey) -> None:
    base = ["push", "--network", str(local_net.network_file), "--signing-key",
            str(nix_key.secret_file)]
    res = nixshard(*base, "--pin-keep", "2", "/nix/store/x")
    assert res.returncode == 2 and "--pin-keep applies only with --pin" in res.stderr
    res = nixshard(*base, "--pin", "ci/main", "--watch-store")
    assert res.returncode == 2 and "--pin applies only to STORE_PATHS" in res.stderr
    res = nixshard(*base, "--pin", "bad name!", "/nix/store/x")
    assert res.returncode == 2 and "--pin" in res.stderr

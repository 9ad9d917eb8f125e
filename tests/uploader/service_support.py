"""What the tests of the push services (``--spool``, ``--watch-store``) share: a network
whose nodes are never reached, and polling for a condition."""

from __future__ import annotations

import time

from nix_formats.keys import SecretKey
from nixshard.localnet import new_publisher
from storage_network.config import Network, init_network
from storage_network.wire.write_auth import Publisher


def offline_network(key_name: str) -> tuple[Network, SecretKey, Publisher]:
    """A network file whose nodes listen nowhere, and its publisher key ``key_name``."""
    publisher, secret = new_publisher(key_name)
    urls = [f"http://127.0.0.1:{9 + i}" for i in range(6)]
    return init_network(urls, 4, 2, [publisher.public]), SecretKey.parse(secret), publisher


# `check` is left untyped: the callers' lambdas read variables mypy cannot narrow there.
def wait_for(what: str, check, deadline_seconds: float = 180.0,  # type: ignore[no-untyped-def]
             poll_seconds: float = 0.1) -> None:
    """Poll ``check()`` every ``poll_seconds`` until true; fail naming ``what`` after a
    generous deadline."""
    deadline = time.monotonic() + deadline_seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_seconds)

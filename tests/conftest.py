"""Suite-wide rules: real-Nix tests may be skipped on a laptop without nix, never in CI.
Suite-wide fixtures: one SeaweedFS S3 server for the session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from nixshard.seaweed import SeaweedServer

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HAVE_NIX = shutil.which("nix") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside CI, skip ``nix``-marked tests when nix is absent; in CI they run (and fail)."""
    if HAVE_NIX or IN_CI:
        return
    skip = pytest.mark.skip(reason="nix is not on PATH (CI installs nix-bin)")
    for item in items:
        if item.get_closest_marker("nix"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI a skipped real-Nix test counts as a failure."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("nix"):
        report.outcome = "failed"
        report.longrepr = f"real-Nix test skipped in CI: {report.longrepr}"


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS S3 server (``weed server -s3``) for the whole session, started on
    first use; tests keep to buckets of their own (see ``LocalNetwork.bucket_prefix``)."""
    from nixshard.seaweed import SeaweedServer  # botocore: only for sessions that use S3
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed") / "weed").start()
    try:
        yield server.wait_ready()
    finally:
        server.kill()  # throwaway data: no need for weed's slow clean shutdown

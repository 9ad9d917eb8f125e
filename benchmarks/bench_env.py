"""The machine bench.py runs on: the tools it needs, nix's environment, what to report of it."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def find_tool(name: str) -> str | None:
    """Path of ``name`` on PATH, or in /usr/sbin (nginx lives there on Debian)."""
    found = shutil.which(name)
    if found is None and Path("/usr/sbin", name).is_file():
        found = f"/usr/sbin/{name}"
    return found


def ensure_tools() -> None:
    """Install nginx and wrk with apt-get when either is missing (sudo when not root)."""
    if find_tool("nginx") and find_tool("wrk"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("installing nginx-light and wrk with apt-get", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "nginx-light", "wrk"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def ensure_python_packages() -> None:
    """``pip install -e .`` when nixshard does not import, ``.[bench]`` when matplotlib."""
    try:
        import nixshard.localnet  # noqa: F401
    except ImportError:
        print("installing nixshard (pip install -e .)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "."], cwd=REPO,
                       check=True)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("installing the bench extra (pip install -e '.[bench]')", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", ".[bench]"],
                       cwd=REPO, check=True)


def nix_env(xdg_cache: Path) -> dict[str, str]:
    """The environment for ``nix``: daemonless NIX_CONFIG and its own (fresh) XDG_CACHE_HOME."""
    from nixshard.localnet import env_with_nix_config

    return {**env_with_nix_config(), "XDG_CACHE_HOME": str(xdg_cache)}


def command_output(*cmd: str) -> str:
    """stdout+stderr of a command, stripped ('' when it cannot run)."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (proc.stdout + proc.stderr).strip()


def machine_info(load_at_start: float) -> list[tuple[str, str]]:
    """What the figures were measured on (with the 1-minute load average at start and end:
    other work on the machine shows up as noise)."""
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    commit = command_output("git", "-C", str(REPO), "rev-parse", "--short", "HEAD")
    dirty = command_output("git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no")
    return [
        ("date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cores (nproc)", str(os.cpu_count())),
        ("CPU", model),
        ("kernel", platform.release()),
        ("python", platform.python_version()),
        ("nix", command_output("nix", "--version")),
        ("nginx", command_output(find_tool("nginx") or "nginx", "-v")),
        ("wrk", command_output("wrk", "--version").split(" Copyright")[0]),
        ("nixshard commit", commit + (" (with uncommitted changes)" if dirty else "")),
        ("load average (1 min) at start / end",
         f"{load_at_start:.2f} / {os.getloadavg()[0]:.2f}"),
    ]

"""nixshard against plain Nix + nginx: the figures of the performance bars, in one run.

Usage (from the repository root; installs nginx, wrk and matplotlib if missing)::

    python3 benchmarks/bench.py [--runs 5] [--wrk-seconds 5] [--skip-big] [--big-mib 1024]
                                [--only push,pull,get,narinfo,rss,bytes] [--keep]
                                [--out benchmarks/results.md]

The data: copies of /usr/lib/gcc (~125 MB NAR) and /usr/lib/python3.11 (~52 MB NAR) added
with ``nix-store --add``; a second python tree with every 20th regular file (sorted by path)
edited, added as a third path (the dedup figure); and a ``--big-mib`` NAR (1 GiB by default,
deterministic, about a quarter random bytes, the rest real /usr/lib bytes) for memory.

The network: a key from ``nix-store --generate-binary-cache-key``, 6 nodes, 4-of-6
(``LocalNetwork.start_nodes(6, 4, 2)``), ``nixshard serve`` gateways with default options.
The reference: ``nix copy --to file://DIR?compression=zstd`` and that DIR served as static
files by nginx (1 worker, sendfile, no access log).

Timed runs alternate ours and the reference (ours, ref, ours, ref, ...) so noise hits both;
each figure is the median of ``--runs``, the ratio is ours / reference:

- push: ``nixshard push`` of gcc+python into fresh nodes vs ``nix copy --to file://`` into a
  fresh DIR: wall seconds and the child's peak RSS (``os.wait4`` rusage);
- pull cold / degraded / hot: ``nix copy --from`` a fresh gateway (empty cache; degraded:
  2 of the 6 nodes stopped) or the same gateway again (hot) vs ``nix copy --from`` nginx,
  each into a fresh store root with a fresh ``XDG_CACHE_HOME`` (no narinfo disk cache);
- get: one GET of the gcc ``.nar.zst`` (curl), cold (fresh gateway) and hot (second GET),
  MB/s of body vs nginx;
- narinfo: ``wrk -t1 -c32`` on ``/<hash>.narinfo`` hits and 404s, requests/s vs nginx;
- rss: peak RSS of ``nixshard push`` of one path (gcc, the big NAR) vs ``nix copy --to
  file://`` of it, and VmHWM of a fresh gateway after one cold GET of that NAR;
- bytes: st_size of the nodes' ``shards/`` and ``records/`` after pushing gcc+python
  vs n/k x the compressed size (the NAR's Content-Length), then the bytes the edited
  python tree adds.

Writes a markdown report (``--out``), a ratio chart next to it (``ratios.png``) and prints
the table.  Nothing is asserted: bars are reported as met or not met.  Not part of pytest.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nixshard.localnet import LocalNetwork, ManagedProcess

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.sections import kept_sections  # noqa: E402

SECTIONS = ("push", "pull", "get", "narinfo", "rss", "bytes")
ABSENT_HASH = "a" * 32  # 32 nix32 characters, a path nobody pushed
MB = 1e6
MIB = 1 << 20
RANDOM_PART = 256 * 1024  # random bytes per MiB block of the big tree; the rest is real data
SEED = 20240505


class BenchError(Exception):
    """A command the benchmark depends on failed."""


# ---------------------------------------------------------------- environment


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


# ---------------------------------------------------------------- measuring


@dataclass
class Sample:
    """One run of a command: wall seconds and the child's peak RSS in bytes."""

    seconds: float
    rss: int


# Runs a command under a small Python (``-I -S``) that forks, execs and waits for it, and
# writes "<wall seconds> <ru_maxrss KiB>" to argv[1].  Linux counts in a child's ru_maxrss
# the memory of the process it was forked from as it was at exec, so the command must be
# forked from this ~9 MB helper, not from the benchmark (hundreds of MB).
RSS_HELPER = """\
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{time.perf_counter() - start} {usage.ru_maxrss}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(cmd: Sequence[str], env: dict[str, str], log: Path) -> Sample:
    """Run ``cmd`` to completion (output to ``log``); its wall time and peak RSS.

    The RSS is ``ru_maxrss`` from ``os.wait4`` in :data:`RSS_HELPER`: the largest
    of the command and the descendants it waited for (floor: the helper's ~9 MB).

    Raises:
        BenchError: the command failed (the message holds the tail of its log).
    """
    figures = log.with_suffix(".rusage")
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", RSS_HELPER, str(figures),
                               *cmd], stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env=env, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise BenchError(f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n{tail}")
    seconds, maxrss_kib = figures.read_text().split()
    return Sample(float(seconds), int(maxrss_kib) * 1024)


def vm_hwm(pid: int) -> int:
    """Peak resident set (VmHWM) of a running process, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmHWM for pid {pid}")


def timed_get(url: str) -> tuple[float, int]:
    """Seconds and body bytes of one full GET (curl when present, else httpx streaming).

    Raises:
        BenchError: the answer was not 200.
    """
    if shutil.which("curl"):
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                              "%{http_code} %{time_total} %{size_download}", url],
                             capture_output=True, text=True, check=False).stdout.split()
        if len(out) != 3 or out[0] != "200":
            raise BenchError(f"GET {url}: {out}")
        return float(out[1]), int(out[2])
    import httpx

    size = 0
    start = time.perf_counter()
    with httpx.stream("GET", url, timeout=300) as resp:
        if resp.status_code != 200:
            raise BenchError(f"GET {url}: {resp.status_code}")
        for piece in resp.iter_raw(1 << 20):
            size += len(piece)
    return time.perf_counter() - start, size


def narinfo_fields(base_url: str, store_path: str) -> dict[str, str]:
    """The ``Key: value`` fields of the narinfo of ``store_path`` at ``base_url``."""
    import httpx

    url = f"{base_url}/{Path(store_path).name[:32]}.narinfo"
    resp = httpx.get(url, timeout=60)
    if resp.status_code != 200:
        raise BenchError(f"GET {url}: {resp.status_code}")
    fields = {}
    for line in resp.text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields[key] = value
    return fields


def compressed_size(base_url: str, store_path: str) -> int:
    """Bytes of the path's ``.nar.zst`` at ``base_url``: FileSize, else HEAD Content-Length."""
    import httpx

    fields = narinfo_fields(base_url, store_path)
    if "FileSize" in fields:
        return int(fields["FileSize"])
    resp = httpx.head(f"{base_url}/{fields['URL']}", timeout=60)
    return int(resp.headers["content-length"])


@dataclass
class WrkResult:
    """One wrk run: requests/s, requests sent, non-2xx/3xx answers, socket errors."""

    rps: float
    requests: int
    non_2xx: int
    errors: str


def run_wrk(url: str, seconds: int, script: Path | None) -> WrkResult:
    """``wrk -t1 -c32 -dS`` on ``url`` (``script``: a Lua file choosing the paths)."""
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", *(["-s", str(script)] if script else []), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:(.*)", out)
    if not rps or not total:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    return WrkResult(float(rps.group(1)), int(total.group(1)), int(non.group(1)) if non else 0,
                     errors.group(1).strip() if errors else "none")


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Bar:
    """A performance bar: ``ratio_max``/``ratio_min`` on ours/ref, ``abs_max``/``abs_min``."""

    kind: str
    limit: float

    def met(self, ours: float, ref: float | None) -> bool:
        """True when the median figures meet the bar."""
        if self.kind.startswith("ratio"):
            assert ref
            value = ours / ref
        else:
            value = ours
        return value <= self.limit if self.kind.endswith("max") else value >= self.limit

    def text(self, unit: str) -> str:
        """The bar as written in the table."""
        sign = "<=" if self.kind.endswith("max") else ">="
        if self.kind.startswith("ratio"):
            return f"{sign} {self.limit:g}x"
        return f"{sign} {self.limit:g} {unit}"


@dataclass
class Row:
    """One measure: samples of ours and of the reference, its unit and bar."""

    measure: str
    unit: str
    ours: list[float]
    ref: list[float] = field(default_factory=list)
    bar: Bar | None = None

    @property
    def ours_median(self) -> float:
        """Median of our samples."""
        return statistics.median(self.ours)

    @property
    def ref_median(self) -> float | None:
        """Median of the reference samples (None without a reference)."""
        return statistics.median(self.ref) if self.ref else None

    @property
    def ratio(self) -> float | None:
        """ours / reference of the medians."""
        ref = self.ref_median
        return self.ours_median / ref if ref else None

    @property
    def met(self) -> bool | None:
        """Bar met (None: no bar)."""
        return self.bar.met(self.ours_median, self.ref_median) if self.bar else None

    def cells(self) -> list[str]:
        """The row's table cells."""
        ratio = self.ratio
        met = {None: "", True: "met", False: "**not met**"}[self.met]
        return [self.measure, f"{fmt(self.ours_median)} {self.unit}",
                f"{fmt(self.ref_median)} {self.unit}" if self.ref else "-",
                f"{ratio:.2f}x" if ratio is not None else "-",
                self.bar.text(self.unit) if self.bar else "-", met]

    def chart_point(self) -> tuple[str, float, float | None] | None:
        """(label, value, threshold) for the ratio chart, None when nothing to plot."""
        ratio = self.ratio
        if self.bar is None:
            return (self.measure, ratio, None) if ratio else None
        if self.bar.kind.startswith("ratio"):
            assert ratio is not None
            return self.measure, ratio, self.bar.limit
        if ratio is not None:
            return self.measure, ratio, self.bar.limit / (self.ref_median or 1)
        return f"{self.measure} (/ bar)", self.ours_median / self.bar.limit, 1.0


def fmt(value: float | None) -> str:
    """A figure with 3 significant digits or so."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(rows: Sequence[Row]) -> str:
    """The markdown table of ``rows``."""
    head = ["measure", "ours (median)", "reference (median)", "ratio", "bar", ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def write_chart(rows: Sequence[Row], path: Path) -> None:
    """A horizontal bar chart of the ratios (log scale), each bar's threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    points = [(row, p) for row in rows if (p := row.chart_point()) is not None]
    if not points:
        return
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(points) + 1.6))
    for y, (row, (_label, value, threshold)) in enumerate(points):
        color = {True: "tab:green", False: "tab:red", None: "tab:gray"}[row.met]
        ax.barh(y, value, color=color, height=0.6)
        ax.text(value * 1.03, y, f"{value:.2f}", va="center", fontsize=8)
        if threshold is not None:
            ax.plot([threshold, threshold], [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="gray", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(points)), [label for _, (label, _, _) in points], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("ours / reference (black tick: the bar; green met, red not met, gray no bar)")
    ax.set_title("nixshard vs nix copy file:// + nginx")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- data


def add_to_store(tree: Path, env: dict[str, str]) -> str:
    """``nix-store --add`` a directory; its store path."""
    out = subprocess.run(["nix-store", "--add", str(tree)], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        raise BenchError(f"nix-store --add {tree}: {out.stderr.strip()}")
    return out.stdout.strip()


def regular_files(tree: Path) -> list[Path]:
    """Regular files (not symlinks) under ``tree``, sorted by relative path."""
    files = [p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()]
    return sorted(files, key=lambda p: p.relative_to(tree).as_posix())


def edit_every_20th(tree: Path) -> int:
    """Change every 20th regular file of ``tree`` deterministically; how many were changed.

    Eight bytes in the middle are overwritten and a short line is appended.
    """
    changed = 0
    for i, path in enumerate(regular_files(tree)):
        if i % 20:
            continue
        path.chmod(path.stat().st_mode | 0o200)
        data = bytearray(path.read_bytes())
        mid = len(data) // 2
        data[mid:mid + 8] = f"{i:08x}".encode()
        data += f"\n# nixshard bench v2 edit {i}\n".encode()
        path.write_bytes(bytes(data))
        changed += 1
    return changed


def real_bytes_pool(trees: Sequence[Path], limit: int) -> bytes:
    """Up to ``limit`` bytes of the regular files under ``trees``, concatenated."""
    parts: list[bytes] = []
    size = 0
    for tree in trees:
        for path in regular_files(tree):
            data = path.read_bytes()[:limit - size]
            parts.append(data)
            size += len(data)
            if size >= limit:
                return b"".join(parts)
    return b"".join(parts)


def make_big_tree(dst: Path, mib: int, pool: bytes) -> None:
    """``mib`` MiB of deterministic, not trivially compressible files under ``dst``.

    Each MiB is 256 KiB of seeded random bytes then 768 KiB of real bytes from
    ``pool``; each pass over the pool goes through another byte permutation, so no
    stretch repeats (the chunker would dedup it) and the real parts keep their
    compressibility.
    """
    dst.mkdir(parents=True)
    rng = random.Random(SEED)
    real = MIB - RANDOM_PART
    table = bytes(range(256))
    cursor = len(pool)
    for number in range(math.ceil(mib / 64)):
        with open(dst / f"part-{number:03d}.bin", "wb") as out:
            for _ in range(min(64, mib - number * 64)):
                out.write(rng.randbytes(RANDOM_PART))
                if cursor + real > len(pool):
                    cursor = 0
                    table = bytes(rng.sample(range(256), 256))
                out.write(pool[cursor:cursor + real].translate(table))
                cursor += real


# ---------------------------------------------------------------- the bench


@dataclass
class Bench:
    """Everything one benchmark run holds: options, temp dir, keys, paths, results."""

    args: argparse.Namespace
    work: Path
    sk: Path = Path()
    pk: str = ""
    paths: dict[str, str] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    networks: list[LocalNetwork] = field(default_factory=list)
    nginx: subprocess.Popen[bytes] | None = None
    nginx_url: str = ""
    file_cache: Path | None = None
    counter: int = 0

    def fresh(self, prefix: str) -> Path:
        """A new, not yet existing path under the temp dir."""
        self.counter += 1
        return self.work / f"{prefix}-{self.counter}"

    def env(self) -> dict[str, str]:
        """Environment for one nix command: a fresh XDG_CACHE_HOME (no narinfo disk cache)."""
        xdg = self.fresh("xdg")
        xdg.mkdir()
        return nix_env(xdg)

    def note(self, text: str) -> None:
        """Print a detail line and keep it for the report."""
        print(f"  {text}", flush=True)
        self.details.append(text)

    def wants(self, section: str) -> bool:
        """True when ``section`` is to be measured."""
        return section in self.args.only

    def log(self, name: str) -> Path:
        """A log file in the temp dir."""
        return self.work / "logs" / f"{name}.log"

    # ---- processes

    def new_network(self, name: str) -> LocalNetwork:
        """A fresh local network of 6 nodes, 4-of-6, under the temp dir (closed at the end)."""
        from nixshard.localnet import LocalNetwork
        from storage_network.wire.write_auth import parse_publisher_secret

        root = self.work / name
        root.mkdir()
        net = LocalNetwork(root, parse_publisher_secret(self.sk.read_text()))
        self.networks.append(net)
        net.start_nodes(6, 4, 2)
        return net

    def drop_network(self, net: LocalNetwork) -> None:
        """Stop a network's processes and delete its data (kept with --keep)."""
        net.close()
        self.networks.remove(net)
        if not self.args.keep:
            remove_tree(net.root)

    def push_cmd(self, net: LocalNetwork, paths: Sequence[str]) -> list[str]:
        """The ``nixshard push`` command line for ``paths``."""
        return [sys.executable, "-m", "nixshard", "push", "--network", str(net.network_file),
                "--signing-key", str(self.sk), "--no-progress", *paths]

    def push(self, net: LocalNetwork, paths: Sequence[str]) -> Sample:
        """``nixshard push`` of ``paths`` (wall time, peak RSS)."""
        return run_measured(self.push_cmd(net, paths), self.env(), self.log("push"))

    def copy_to_file(self, paths: Sequence[str], dest: Path) -> Sample:
        """``nix copy --to file://dest?compression=zstd&secret-key=SK`` (wall, peak RSS)."""
        url = f"file://{dest}?compression=zstd&secret-key={self.sk}"
        return run_measured(["nix", "copy", "--to", url, *paths], self.env(),
                            self.log("copy-to"))

    def copy_from(self, url: str, paths: Sequence[str]) -> Sample:
        """``nix copy --from url`` into a fresh store root (removed afterwards)."""
        root = self.fresh("root")
        try:
            sample = run_measured(["nix", "copy", "--from", url, "--to", str(root), "--option",
                                   "trusted-public-keys", self.pk, *paths], self.env(),
                                  self.log("copy-from"))
            missing = [p for p in paths if not (root / p.lstrip("/")).exists()]
            if missing:
                raise BenchError(f"nix copy --from {url} did not copy {missing}")
            return sample
        finally:
            remove_tree(root)

    def gateway(self, net: LocalNetwork, name: str) -> ManagedProcess:
        """A fresh ``nixshard serve`` with an empty cache, default options."""
        return net.start_gateway(name)

    def drop_gateway(self, net: LocalNetwork, gateway: ManagedProcess) -> None:
        """Stop a gateway and delete its cache dir."""
        gateway.stop()
        net.gateways.remove(gateway)
        remove_tree(net.root / f"{gateway.name}-cache")


def remove_tree(path: Path) -> None:
    """Delete a tree, read-only store directories included."""
    def onerror(func: Callable[..., object], name: str, _exc: object) -> None:
        parent = os.path.dirname(name)
        os.chmod(parent, 0o755)
        if os.path.isdir(name) and not os.path.islink(name):
            os.chmod(name, 0o755)
        func(name)

    if path.exists():
        shutil.rmtree(path, onerror=onerror)


def nar_sizes(paths: Sequence[str], env: dict[str, str]) -> dict[str, int]:
    """narSize of each path (``nix path-info --json``)."""
    out = subprocess.run(["nix", "path-info", "--json", *paths], capture_output=True,
                         text=True, env=env, check=True).stdout
    data = json.loads(out)
    if isinstance(data, dict):
        return {p: int(v["narSize"]) for p, v in data.items()}
    return {item["path"]: int(item["narSize"]) for item in data}


def build_data(bench: Bench) -> None:
    """Copy the trees, make the edited python and the big tree, ``nix-store --add`` them."""
    data = bench.work / "data"
    data.mkdir()
    env = bench.env()
    for name, src in (("gcc", "/usr/lib/gcc"), ("python", "/usr/lib/python3.11")):
        shutil.copytree(src, data / name, symlinks=True)
        bench.paths[name] = add_to_store(data / name, env)
    if bench.wants("bytes"):
        shutil.copytree(data / "python", data / "python-v2", symlinks=True)
        changed = edit_every_20th(data / "python-v2")
        bench.paths["python2"] = add_to_store(data / "python-v2", env)
        bench.note(f"python v2: {changed} of {len(regular_files(data / 'python'))} regular "
                   "files edited")
    if bench.wants("rss") and not bench.args.skip_big:
        start = time.perf_counter()
        pool = real_bytes_pool([data / "gcc", data / "python"], 96 * MIB)
        make_big_tree(data / "big", bench.args.big_mib, pool)
        bench.paths["big"] = add_to_store(data / "big", env)
        remove_tree(data / "big")
        bench.note(f"big tree ({bench.args.big_mib} MiB) made and added in "
                   f"{time.perf_counter() - start:.1f} s")
    sizes = nar_sizes(list(bench.paths.values()), env)
    for name, path in bench.paths.items():
        bench.note(f"{name}: {path} NAR {sizes[path] / MB:.1f} MB")


def generate_key(bench: Bench) -> None:
    """A signing key made by ``nix-store --generate-binary-cache-key``."""
    bench.sk = bench.work / "secret.key"
    pk = bench.work / "public.key"
    subprocess.run(["nix-store", "--generate-binary-cache-key", "nixshard-bench-1",
                    str(bench.sk), str(pk)], check=True, env=bench.env())
    bench.pk = pk.read_text().strip()


# ---------------------------------------------------------------- nginx


NGINX_CONF = """\
worker_processes 1;
daemon off;
{user}pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    types {{ text/x-nix-narinfo narinfo; text/plain nix-cache-info; }}
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def write_nginx_conf(conf: Path, root: Path, port: int) -> None:
    """A minimal nginx.conf serving ``root``; directives this nginx lacks are dropped."""
    nginx = find_tool("nginx") or "nginx"
    user = "user root root;\n" if os.geteuid() == 0 else ""
    text = NGINX_CONF.format(user=user, dir=conf.parent, port=port, root=root)
    for _ in range(6):
        conf.write_text(text)
        test = subprocess.run([nginx, "-t", "-p", str(conf.parent), "-c", str(conf), "-e",
                               str(conf.parent / "error.log")], capture_output=True, text=True)
        unknown = re.search(r'unknown directive "(\w+)"', test.stderr)
        if test.returncode == 0 or not unknown:
            if test.returncode:
                raise BenchError(f"nginx -t: {test.stderr}")
            return
        text = "\n".join(line for line in text.splitlines()
                         if not line.strip().startswith(unknown.group(1) + " ")) + "\n"
    raise BenchError("nginx.conf: too many unknown directives")


def start_nginx(bench: Bench, root: Path) -> None:
    """nginx serving the file cache ``root`` on a free port (bench.nginx, bench.nginx_url)."""
    import httpx

    from nixshard.localnet import free_port

    conf_dir = bench.work / "nginx"
    (conf_dir / "tmp").mkdir(parents=True)
    port = free_port()
    conf = conf_dir / "nginx.conf"
    write_nginx_conf(conf, root, port)
    log = open(conf_dir / "stderr.log", "ab")
    bench.nginx = subprocess.Popen([find_tool("nginx") or "nginx", "-p", str(conf_dir), "-c",
                                    str(conf), "-e", str(conf_dir / "error.log")],
                                   stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    log.close()
    bench.nginx_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and bench.nginx.poll() is None:
        try:
            if httpx.get(bench.nginx_url + "/nix-cache-info", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise BenchError(f"nginx did not serve {root}/nix-cache-info; see {conf_dir}/error.log")


def stop_nginx(bench: Bench) -> None:
    """Stop nginx (SIGTERM, then SIGKILL)."""
    if bench.nginx and bench.nginx.poll() is None:
        bench.nginx.terminate()
        try:
            bench.nginx.wait(5)
        except subprocess.TimeoutExpired:
            bench.nginx.kill()
            bench.nginx.wait()


# ---------------------------------------------------------------- sections


def bench_push(bench: Bench) -> None:
    """push: nixshard push into fresh nodes vs nix copy --to file:// into a fresh DIR."""
    paths = [bench.paths["gcc"], bench.paths["python"]]
    ours: list[Sample] = []
    ref: list[Sample] = []
    for run in range(bench.args.runs):
        net = bench.new_network(f"push-net-{run}")
        ours.append(bench.push(net, paths))
        bench.drop_network(net)
        dest = bench.fresh("push-filecache")
        ref.append(bench.copy_to_file(paths, dest))
        if bench.file_cache is None:
            bench.file_cache = dest  # reused as nginx's root
        else:
            remove_tree(dest)
        print(f"  push run {run + 1}: ours {ours[-1].seconds:.2f} s, "
              f"ref {ref[-1].seconds:.2f} s", flush=True)
    bench.rows.append(Row("push gcc+python, wall", "s", [s.seconds for s in ours],
                          [s.seconds for s in ref], Bar("ratio_max", 1.0)))
    bench.rows.append(Row("push gcc+python, peak RSS", "MB", [s.rss / MB for s in ours],
                          [s.rss / MB for s in ref]))


def bench_pull(bench: Bench, net: LocalNetwork) -> None:
    """pull cold/hot (fresh gateway, then again) and degraded (2 nodes down) vs nginx."""
    paths = [bench.paths["gcc"], bench.paths["python"]]
    runs = bench.args.runs
    cold, hot, degraded = [], [], []
    ref_cold, ref_hot, ref_degraded = [], [], []
    for run in range(runs):
        gateway = bench.gateway(net, f"pull-{run}")
        cold.append(bench.copy_from(gateway.url, paths).seconds)
        ref_cold.append(bench.copy_from(bench.nginx_url, paths).seconds)
        hot.append(bench.copy_from(gateway.url, paths).seconds)
        ref_hot.append(bench.copy_from(bench.nginx_url, paths).seconds)
        bench.drop_gateway(net, gateway)
        print(f"  pull run {run + 1}: cold {cold[-1]:.2f} s (ref {ref_cold[-1]:.2f}), "
              f"hot {hot[-1]:.2f} s (ref {ref_hot[-1]:.2f})", flush=True)
    down = [1, 2]
    for number in down:
        net.nodes[number - 1].stop()
    try:
        for run in range(runs):
            gateway = bench.gateway(net, f"degraded-{run}")
            degraded.append(bench.copy_from(gateway.url, paths).seconds)
            ref_degraded.append(bench.copy_from(bench.nginx_url, paths).seconds)
            bench.drop_gateway(net, gateway)
            print(f"  pull degraded run {run + 1}: {degraded[-1]:.2f} s "
                  f"(ref {ref_degraded[-1]:.2f})", flush=True)
    finally:
        for number in down:
            net.restart_node(number)
    bench.rows.append(Row("pull gcc+python cold, wall", "s", cold, ref_cold,
                          Bar("ratio_max", 1.5)))
    bench.rows.append(Row("pull gcc+python degraded (2 of 6 nodes down), wall", "s", degraded,
                          ref_degraded, Bar("ratio_max", 1.7)))
    bench.rows.append(Row("pull gcc+python hot, wall", "s", hot, ref_hot, Bar("ratio_max", 1.1)))


def bench_get(bench: Bench, net: LocalNetwork) -> None:
    """GET of the gcc .nar.zst: cold (fresh gateway) and hot (second GET) vs nginx, MB/s."""
    gcc = bench.paths["gcc"]
    ref_url = f"{bench.nginx_url}/{narinfo_fields(bench.nginx_url, gcc)['URL']}"
    cold, hot, ref_cold, ref_hot = [], [], [], []
    size = 0
    for run in range(bench.args.runs):
        gateway = bench.gateway(net, f"get-{run}")
        url = f"{gateway.url}/{narinfo_fields(gateway.url, gcc)['URL']}"
        seconds, size = timed_get(url)
        cold.append(size / MB / seconds)
        seconds, ref_size = timed_get(ref_url)
        ref_cold.append(ref_size / MB / seconds)
        seconds, size = timed_get(url)
        hot.append(size / MB / seconds)
        seconds, ref_size = timed_get(ref_url)
        ref_hot.append(ref_size / MB / seconds)
        bench.drop_gateway(net, gateway)
        print(f"  GET run {run + 1}: cold {cold[-1]:.0f} MB/s, hot {hot[-1]:.0f} MB/s, "
              f"nginx {ref_cold[-1]:.0f} / {ref_hot[-1]:.0f} MB/s", flush=True)
    bench.note(f"GET bodies: ours {size / MB:.1f} MB (.nar.zst of gcc), "
               f"nginx {ref_size / MB:.1f} MB (nix's .nar.zst)")
    bench.rows.append(Row("GET gcc NAR hot (2nd GET), body", "MB/s", hot, ref_hot,
                          Bar("ratio_min", 0.8)))
    bench.rows.append(Row("GET gcc NAR cold (fresh gateway), body", "MB/s", cold, ref_cold,
                          Bar("abs_min", 300)))


def bench_narinfo(bench: Bench, daemon_url: str, quiet_url: str) -> None:
    """wrk on narinfo hits (cycling over the pushed paths) and 404s, ours vs nginx.

    The bars are judged like for like: nginx here runs with ``access_log off``,
    so ours runs with ``--no-access-log`` (``quiet_url``); the hits of the
    default daemon (access log on) are reported on a row of their own.
    """
    hit_paths = [f"/{Path(p).name[:32]}.narinfo"
                 for p in (bench.paths["gcc"], bench.paths["python"])]
    script = bench.work / "hits.lua"
    script.write_text("local paths = {" + ", ".join(f'"{p}"' for p in hit_paths) + "}\n"
                      "local i = 0\n"
                      "request = function()\n"
                      "  i = i % #paths + 1\n"
                      "  return wrk.format(\"GET\", paths[i])\n"
                      "end\n")
    seconds = bench.args.wrk_seconds
    results: dict[str, list[WrkResult]] = {"hits": [], "ref hits": [], "404": [], "ref 404": [],
                                           "logged hits": []}
    for run in range(bench.args.runs):
        results["hits"].append(run_wrk(quiet_url, seconds, script))
        results["ref hits"].append(run_wrk(bench.nginx_url, seconds, script))
        results["logged hits"].append(run_wrk(daemon_url, seconds, script))
        results["404"].append(run_wrk(f"{quiet_url}/{ABSENT_HASH}.narinfo", seconds, None))
        results["ref 404"].append(run_wrk(f"{bench.nginx_url}/{ABSENT_HASH}.narinfo", seconds,
                                          None))
        print("  narinfo run {}: {}".format(run + 1, ", ".join(
            f"{k} {v[-1].rps:.0f}/s" for k, v in results.items())), flush=True)
    for name, runs in results.items():
        bench.note(f"wrk {name}: requests {[r.requests for r in runs]}, non-2xx/3xx "
                   f"{[r.non_2xx for r in runs]}, socket errors {[r.errors for r in runs]}")
    bench.rows.append(Row("narinfo hits (wrk -t1 -c32), no access log", "req/s",
                          [r.rps for r in results["hits"]], [r.rps for r in results["ref hits"]],
                          Bar("abs_min", 25000)))
    bench.rows.append(Row("narinfo hits, default daemon (access log on)", "req/s",
                          [r.rps for r in results["logged hits"]],
                          [r.rps for r in results["ref hits"]]))
    bench.rows.append(Row("narinfo 404s (wrk -t1 -c32), no access log", "req/s",
                          [r.rps for r in results["404"]], [r.rps for r in results["ref 404"]],
                          Bar("abs_min", 25000)))


def bench_rss(bench: Bench) -> None:
    """Peak RSS moving one NAR: uploader (push of that path alone) and a fresh gateway."""
    names = ["gcc"] + (["big"] if "big" in bench.paths else [])
    net = bench.new_network("rss-net")
    try:
        for name in names:
            path = bench.paths[name]
            ours = bench.push(net, [path])
            dest = bench.fresh("rss-filecache")
            ref = bench.copy_to_file([path], dest)
            remove_tree(dest)
            gateway = bench.gateway(net, f"rss-{name}")
            url = f"{gateway.url}/{narinfo_fields(gateway.url, path)['URL']}"
            seconds, size = timed_get(url)
            assert gateway.proc is not None
            daemon_rss = vm_hwm(gateway.proc.pid)
            bench.drop_gateway(net, gateway)
            label = "1 GiB" if name == "big" and bench.args.big_mib == 1024 else name
            if name == "big" and bench.args.big_mib != 1024:
                label = f"{bench.args.big_mib} MiB"
            bench.note(f"{name}: push {ours.seconds:.1f} s (nix copy --to file:// "
                       f"{ref.seconds:.1f} s); cold GET {size / MB:.0f} MB in {seconds:.1f} s")
            bench.rows.append(Row(f"uploader peak RSS, {label} NAR", "MB", [ours.rss / MB],
                                  [ref.rss / MB],
                                  Bar("abs_max", 250) if name == "big" else None))
            bench.rows.append(Row(f"daemon peak RSS after a cold GET, {label} NAR", "MB",
                                  [daemon_rss / MB],
                                  bar=Bar("abs_max", 150) if name == "big" else None))
    finally:
        bench.drop_network(net)


def node_bytes(net: LocalNetwork, sub: str) -> tuple[int, int]:
    """Total st_size and allocated bytes (st_blocks * 512) under each node's ``sub`` dir."""
    size = blocks = 0
    for number in range(1, len(net.nodes) + 1):
        for path in (net.node_dir(number) / sub).rglob("*"):
            if path.is_file():
                st = path.stat()
                size += st.st_size
                blocks += st.st_blocks * 512
    return size, blocks


def distinct_chunk_bytes(net: LocalNetwork, paths: Sequence[str]) -> int | None:
    """Compressed bytes of the distinct chunks in the paths' manifests (records on the nodes).

    None when a record cannot be found or opened (the node layout changed).
    """
    from storage_network.errors import RecordError
    from storage_network.wire.record import open_record

    assert net.network is not None
    chunks: dict[bytes, int] = {}
    for path in paths:
        key = Path(path).name[:32]
        copies = [net.node_dir(i) / "records" / key for i in range(1, len(net.nodes) + 1)]
        found = [c for c in copies if c.is_file()]
        if not found:
            return None
        try:
            record = open_record(net.network.publishers, key, found[0].read_bytes())
        except RecordError:
            return None
        chunks.update((c.chunk_id, c.stored_size) for c in record.manifest.chunks)
    return sum(chunks.values())


def bench_bytes(bench: Bench, net: LocalNetwork, daemon_url: str) -> None:
    """Bytes on the nodes after gcc+python (fresh network) vs n/k x compressed; the v2 delta."""
    assert net.network is not None
    n, k = net.network.n, net.network.k
    paths = [bench.paths["gcc"], bench.paths["python"]]
    nar = sum(nar_sizes(paths, bench.env()).values())
    compressed = sum(compressed_size(daemon_url, p) for p in paths)
    nix_zst = sum(compressed_size(bench.nginx_url, p) for p in paths)
    shards, shards_alloc = node_bytes(net, "shards")
    records, records_alloc = node_bytes(net, "records")
    bench.note(f"gcc+python: NAR {nar / MB:.1f} MB, compressed {compressed / MB:.1f} MB "
               f"(nix zstd {nix_zst / MB:.1f} MB), shards {shards / MB:.1f} MB "
               f"(allocated {shards_alloc / MB:.1f}), records {records / 1e3:.1f} kB "
               f"(allocated {records_alloc / 1e3:.1f} kB), n/k = {n}/{k}")
    bench.rows.append(Row(f"shard bytes on nodes vs n/k x compressed (gcc+python, {k}-of-{n})",
                          "MB", [shards / MB], [n / k * compressed / MB], Bar("ratio_max", 1.02)))
    distinct = distinct_chunk_bytes(net, paths)
    if distinct is not None:
        bench.note(f"distinct chunks' compressed bytes {distinct / MB:.1f} MB (a chunk that "
                   "repeats within or across NARs is stored once)")
        bench.rows.append(Row("shard bytes on nodes vs n/k x compressed distinct chunks", "MB",
                              [shards / MB], [n / k * distinct / MB]))
    bench.rows.append(Row("record bytes on nodes (gcc+python)", "kB", [records / 1e3]))
    bench.rows.append(Row("compressed NAR bytes vs nix copy zstd (gcc+python)", "MB",
                          [compressed / MB], [nix_zst / MB]))
    v2 = bench.paths["python2"]
    bench.push(net, [v2])
    added = (node_bytes(net, "shards")[0] + node_bytes(net, "records")[0]) - (shards + records)
    v2_nar = nar_sizes([v2], bench.env())[v2]
    v2_compressed = compressed_size(daemon_url, v2)
    bench.note(f"python v2: NAR {v2_nar / MB:.1f} MB, compressed {v2_compressed / MB:.1f} MB, "
               f"bytes added on nodes {added / MB:.2f} MB = {added / v2_nar:.1%} of its NAR, "
               f"{added / (n / k * v2_compressed):.1%} of n/k x its compressed size")
    bench.rows.append(Row("python v2 (5% files edited): bytes added on nodes vs n/k x "
                          "compressed", "MB", [added / MB], [n / k * v2_compressed / MB]))


# ---------------------------------------------------------------- main


def run_sections(bench: Bench) -> None:
    """Build the data and measure each section asked for, in order."""
    build_data(bench)
    generate_key(bench)
    if bench.wants("push"):
        print("push", flush=True)
        bench_push(bench)
    if any(bench.wants(s) for s in ("pull", "get", "narinfo", "bytes")):
        print("main network (6 nodes, 4-of-6): push gcc+python, file cache, nginx", flush=True)
        net = bench.new_network("net")
        paths = [bench.paths["gcc"], bench.paths["python"]]
        bench.push(net, paths)
        if bench.file_cache is None:
            bench.file_cache = bench.fresh("filecache")
            bench.copy_to_file(paths, bench.file_cache)
        start_nginx(bench, bench.file_cache)
        daemon_url = net.start_daemon()
        if bench.wants("bytes"):
            print("bytes", flush=True)
            bench_bytes(bench, net, daemon_url)
        if bench.wants("pull"):
            print("pull", flush=True)
            bench_pull(bench, net)
        if bench.wants("get"):
            print("get", flush=True)
            bench_get(bench, net)
        if bench.wants("narinfo"):
            print("narinfo", flush=True)
            quiet = net.start_gateway("narinfo-quiet", extra=("--no-access-log",))
            bench_narinfo(bench, daemon_url, quiet.url)
        stop_nginx(bench)
        bench.drop_network(net)
    if bench.wants("rss"):
        print("rss", flush=True)
        bench_rss(bench)


def report(bench: Bench, machine: list[tuple[str, str]], seconds: float) -> str:
    """The markdown report."""
    args = bench.args
    lines = ["# nixshard benchmark results", "",
             "Made by `python3 benchmarks/bench.py` (see its docstring and the README's "
             "Benchmarks section). Ours: `nixshard push` / `nixshard serve` on a local "
             "network of 6 nodes, 4-of-6, on this one machine. Reference: `nix copy --to "
             "file://` (zstd) and nginx serving that directory.", "",
             "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in machine]
    lines += ["", "## Figures", "",
              f"Medians of {args.runs} runs (ours and the reference alternate); ratio = "
              "ours / reference of the medians; RSS and bytes rows are one run (a command's "
              "peak RSS is its ru_maxrss, with a floor of ~7 MB from the measuring helper). "
              f"wrk: {args.wrk_seconds} s per run. Sections: {','.join(args.only)}"
              f"{'; big NAR skipped' if args.skip_big else ''}. "
              f"Total run time {seconds / 60:.1f} min.", "",
              table(bench.rows), "",
              "![ratios](ratios.png)", "", "## Details", ""]
    lines += [f"- {text}" for text in bench.details]
    lines += ["", "## Samples", ""]
    lines += [f"- {row.measure}: ours {[round(v, 3) for v in row.ours]}"
              + (f", reference {[round(v, 3) for v in row.ref]}" if row.ref else "")
              for row in bench.rows]
    return "\n".join(lines) + "\n"


def cleanup(bench: Bench) -> None:
    """Stop every process we started; unless --keep, delete the temp dir and store paths."""
    stop_nginx(bench)
    for net in list(bench.networks):
        net.close()
    if bench.args.keep:
        print(f"kept {bench.work}")
        return
    remove_tree(bench.work)
    if bench.paths:
        subprocess.run(["nix-store", "--delete", *bench.paths.values()], capture_output=True,
                       env=nix_env(Path(tempfile.gettempdir())), check=False)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per timed measure")
    parser.add_argument("--wrk-seconds", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--skip-big", action="store_true", help="no big NAR in the rss section")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big tree, MiB")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma list of sections ({','.join(SECTIONS)})")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir (logs, node data) and the store paths")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md",
                        help="the markdown report; ratios.png goes next to it")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    """Run the benchmark and write the report and chart."""
    args = parse_args()
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    load_at_start = os.getloadavg()[0]
    ensure_tools()
    ensure_python_packages()
    bench = Bench(args, Path(tempfile.mkdtemp(prefix="nixshard-bench-")))
    (bench.work / "logs").mkdir()
    print(f"temp dir {bench.work}", flush=True)
    try:
        run_sections(bench)
    finally:
        cleanup(bench)
    seconds = time.perf_counter() - started
    text = report(bench, machine_info(load_at_start), seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + kept_sections(args.out))
    write_chart(bench.rows, args.out.parent / "ratios.png")
    print()
    print(table(bench.rows))
    print(f"\ntotal {seconds / 60:.1f} min; wrote {args.out} and "
          f"{args.out.parent / 'ratios.png'}")


if __name__ == "__main__":
    main()

"""One run of bench.py: its options, temp dir, key, paths and results, and the commands it times."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.bench_env import nix_env
from benchmarks.bench_measure import BenchError, Sample, run_measured
from benchmarks.bench_results import Row

if TYPE_CHECKING:
    from nixshard.localnet import LocalNetwork, ManagedProcess


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
    nginx: ManagedProcess | None = None
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

    def new_network(self, name: str, private: bool = False) -> LocalNetwork:
        """A fresh local network of 6 nodes, 4-of-6, under the temp dir (closed at the end);
        ``private``: a private cache with a cache secret of its own."""
        from nixshard.localnet import LocalNetwork
        from storage_network.wire.write_auth import parse_publisher_secret

        root = self.work / name
        root.mkdir()
        net = LocalNetwork(root, parse_publisher_secret(self.sk.read_text()))
        self.networks.append(net)
        net.start_nodes(6, 4, 2, private=private)
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
        """``nixshard push`` of ``paths`` (wall time, peak RSS, CPU), with the cache
        secret of a private network."""
        return run_measured(self.push_cmd(net, paths), {**self.env(), **net.secret_env},
                            self.log("push"))

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

"""The gateway and nix.conf checks of ``nixshard doctor``: the gateway answers, and
Nix uses it, trusts the network's publisher keys and has its credentials (what each
one checks: :mod:`nixshard.doctor_checks`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from storage_network import Network

from .doctor_checks import Finding, ok, problem, skipped, warning
from .doctor_http import ANSWER_LIMIT, http_get, json_object
from .nix_conf import NixConf, NixConfError, read_settings, system_nix_conf, user_nix_conf

# --- the gateway ----------------------------------------------------------------------


@dataclass
class GatewayProbe:
    """What the gateway answered.

    Attributes:
        url: the gateway's base URL.
        error: why it could not be reached; None when ``/healthz`` answered 200.
        health: its ``/healthz`` JSON object.
        cache_info_status: the status of ``GET /nix-cache-info`` (None: no answer).
        cache_info: that answer's text.
    """

    url: str
    error: str | None = None
    health: dict[str, Any] | None = None
    cache_info_status: int | None = None
    cache_info: str = ""


async def probe_gateway(url: str, timeout: float) -> GatewayProbe:
    """``GET /healthz`` and ``GET /nix-cache-info`` of the gateway at ``url`` (no
    credentials: what Nix sees without its netrc).  Never raises."""
    probe = GatewayProbe(url.rstrip("/"))
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/nix-cache-info"):
            answer = await http_get(session, probe.url, path, timeout, ANSWER_LIMIT)
            if isinstance(answer, str):
                probe.error = answer
                return probe
            body, status = answer.body.decode("utf-8", "replace"), answer.status
            if path == "/healthz":
                doc = json_object(body)
                if status != 200 or doc is None:
                    probe.error = f"GET /healthz answered {status}: is this a nixshard gateway?"
                    return probe
                probe.health = doc
            else:
                probe.cache_info_status, probe.cache_info = status, body
    return probe


def check_gateway(probe: GatewayProbe, network: Network) -> list[Finding]:
    """The gateway answers, serves a Nix cache for ``/nix/store``, and serves a network of
    as many nodes as the network file lists."""
    if probe.error is not None:
        return [problem("gateway", probe.url,
                        f"cannot be reached: {probe.error}. Nix then fails or falls back "
                        "(docs/laptop.md); check that `nixshard serve` runs and listens there")]
    found = []
    status = probe.cache_info_status
    if status == 401:
        found.append(ok("gateway", probe.url,
                        "answers, and asks for credentials (a private network or "
                        "--read-auth): Nix needs them in its netrc file"))
    elif status != 200:
        found.append(problem("gateway", probe.url,
                             f"GET /nix-cache-info answered {status}: Nix cannot use it"))
    elif "StoreDir: /nix/store" not in probe.cache_info:
        found.append(problem("gateway", probe.url,
                             "its nix-cache-info does not say StoreDir: /nix/store"))
    else:
        found.append(ok("gateway", probe.url, "answers nix-cache-info"))
    nodes = (probe.health or {}).get("nodes")
    if isinstance(nodes, int) and nodes != len(network.nodes):
        found.append(warning(
            "gateway", probe.url,
            f"serves a network of {nodes} nodes, the network file lists "
            f"{len(network.nodes)}: does it run with this network file?"))
    return found


# --- nix.conf --------------------------------------------------------------------------


@dataclass
class NixSettings:
    """Nix's settings as the doctor read them.

    Attributes:
        values: setting name -> its words (``substituters`` -> URLs, ``fallback`` ->
            ``["true"]``); None when they could not be read.
        source: where they came from, for messages.
        error: why they could not be read.
        daemon: for a user other than root whose settings came from ``nix
            show-config``: what the system nix.conf alone sets, the settings a Nix
            daemon uses for users outside ``trusted-users``; else None.
    """

    values: dict[str, list[str]] | None
    source: str
    error: str | None = None
    daemon: dict[str, list[str]] | None = None


def _words(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        return [str(k) for k in value]
    return str(value).split() if isinstance(value, str) else [str(value)]


def nix_settings(nix_conf: Path | None, environ: Mapping[str, str]) -> NixSettings:
    """Nix's settings: those of file ``nix_conf`` (and what it includes) when given; else
    what ``nix show-config --json`` reports (every file and ``$NIX_CONFIG`` this user's
    Nix reads); else, without ``nix``, the system and user nix.conf files.  Never raises.
    """
    if nix_conf is not None:
        if not nix_conf.exists():
            return NixSettings(None, str(nix_conf), f"{nix_conf} does not exist")
        try:
            return NixSettings(NixConf.read(nix_conf).settings(), str(nix_conf))
        except NixConfError as exc:
            return NixSettings(None, str(nix_conf), str(exc))
    system = system_nix_conf(environ)
    nix = shutil.which("nix")
    if nix is not None:
        for args in (["show-config", "--json"], ["config", "show", "--json"]):
            try:
                out = subprocess.run([nix, "--extra-experimental-features", "nix-command", *args],
                                     capture_output=True, text=True, timeout=60, check=False,
                                     env=dict(environ))
            except (OSError, subprocess.TimeoutExpired):
                continue
            if out.returncode != 0:
                continue
            doc = json_object(out.stdout)
            if doc is not None:
                values = {k: _words(v.get("value") if isinstance(v, dict) else v)
                          for k, v in doc.items()}
                daemon = None
                if os.geteuid() != 0:
                    try:
                        daemon = read_settings([system])
                    except NixConfError:
                        daemon = None
                return NixSettings(values, f"`nix {' '.join(args[:-1])}`", daemon=daemon)
    user = user_nix_conf(environ)
    try:
        return NixSettings(read_settings([system, user]), f"{system} and {user}")
    except NixConfError as exc:
        return NixSettings(None, f"{system} and {user}", str(exc))


def signing_keys(network: Network) -> dict[str, str]:
    """The keys whose ``Sig:`` Nix must trust, ``name:base64`` by name: the network's
    publishers, without the keys listed only as ``maintainers`` (they sign repairs and
    deletes, not narinfos) unless nothing else is left."""
    maintainers = getattr(network, "maintainers", None) or frozenset()
    keys = {name: key.text() for name, key in network.publishers.items()}
    writers = {name: text for name, text in keys.items() if name not in maintainers}
    return writers or keys


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def check_nix_conf(settings: NixSettings, gateway: str | None, network: Network,
                   needs_credentials: bool) -> list[Finding]:
    """Nix uses the gateway and trusts what it serves.

    Problems: the gateway is not among ``substituters``; no publisher key of the
    network is in ``trusted-public-keys``; the gateway asks for credentials and
    the netrc file has none for its host.  Warnings: a publisher key not
    trusted (its paths are refused); ``fallback`` not true; ``connect-timeout``
    unset (0).
    """
    where = settings.source
    if settings.values is None:
        return [problem("nix.conf", where, f"cannot read Nix's settings: {settings.error}")]
    values = settings.values
    found = []
    subs = values.get("substituters", [])
    wanted = signing_keys(network)
    keys = " ".join(f"--key {text}" for text in wanted.values()) or "--key KEY"
    if gateway is None:
        found.append(skipped("nix.conf", where,
                             "no --gateway: whether Nix uses the gateway is not checked"))
    elif any(_same_url(s, gateway) for s in subs):
        found.append(ok("nix.conf", where, f"{gateway} is a substituter"))
        daemon = settings.daemon
        if daemon is not None and not any(
                _same_url(s, gateway)
                for s in daemon.get("substituters", []) + daemon.get("trusted-substituters", [])):
            found.append(warning(
                "nix.conf", where,
                f"{gateway} is a substituter only through your own settings: on a multi-user "
                "install the Nix daemon uses it only if you are in trusted-users (else it "
                "warns \"ignoring untrusted substituter\"); `sudo nixshard use ...` puts it "
                "in the system nix.conf"))
    else:
        extra = (" (it is only in trusted-substituters, which Nix does not use by itself)"
                 if any(_same_url(s, gateway) for s in values.get("trusted-substituters", []))
                 else "")
        found.append(problem(
            "nix.conf", where,
            f"{gateway} is not among the substituters{extra}: Nix never asks it. Run "
            f"`nixshard use {gateway} {keys}` (substituters now: "
            f"{' '.join(subs) or 'none'})"))
    trusted = set(values.get("trusted-public-keys", []))
    listed = {text: name for name, text in wanted.items()}
    missing = sorted(text for text in listed if text not in trusted)
    if listed and len(missing) == len(listed):
        found.append(problem(
            "nix.conf", where,
            "trusts none of the network's publisher keys: Nix refuses every path the "
            "gateway serves (\"the substitute for ... is not signed by any of the keys in "
            f"'trusted-public-keys'\"). Add `extra-trusted-public-keys = {' '.join(missing)}`"))
    elif listed:
        found.append(ok("nix.conf", where, "trusts the network's publisher key"
                        + ("s" if len(listed) > 1 else "")
                        + (f" ({len(listed) - len(missing)} of {len(listed)})" if missing
                           else "")))
        for text in missing:
            found.append(warning(
                "nix.conf", where,
                f"does not trust publisher key {text}: paths signed only by it are refused"))
    if values.get("fallback", ["false"]) != ["true"]:
        found.append(warning(
            "nix.conf", where,
            "fallback is not true: when a substitute fails to download, Nix fails the build "
            "instead of building it (`fallback = true`)"))
    timeout = values.get("connect-timeout", ["0"])
    if timeout in (["0"], []):
        found.append(warning(
            "nix.conf", where,
            "connect-timeout is 0 (no limit of Nix's own): an unreachable gateway costs curl's "
            "connect timeout on each of Nix's 5 attempts; set `connect-timeout = 5`"))
    if needs_credentials and gateway is not None:
        found.extend(check_netrc(values, gateway, where))
    return found


def netrc_hosts(text: str) -> set[str]:
    """The machine names of a netrc file's entries."""
    tokens = text.split()
    return {tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "machine"}


def check_netrc(values: Mapping[str, list[str]], gateway: str, where: str) -> list[Finding]:
    """The netrc file Nix reads (``netrc-file``, default ``/etc/nix/netrc``) has an entry
    for the gateway's host."""
    path = Path((values.get("netrc-file") or ["/etc/nix/netrc"])[0])
    host = urlsplit(gateway).hostname or ""
    fix = f"`nixshard use {gateway} --key KEY --user USER` writes it"
    try:
        hosts = netrc_hosts(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        return [problem("nix.conf", where,
                        f"the gateway asks for credentials, and the netrc file {path} "
                        f"(netrc-file) cannot be read: {exc.strerror}; {fix}")]
    if host not in hosts:
        return [problem("nix.conf", where,
                        f"the gateway asks for credentials, and the netrc file {path} has no "
                        f"`machine {host}` entry: Nix gets 401 on every request; {fix}")]
    return [ok("nix.conf", where, f"{path} holds credentials for {host}")]

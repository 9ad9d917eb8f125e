"""The checks of ``nixshard doctor``: the :class:`Finding` each check returns, the
network-file and key checks, and how findings combine.

Each check is a small function returning findings.  Most are pure functions
of what was observed, so they are tested on hand-made observations; the few
that talk to something (:func:`~nixshard.doctor_nodes.probe_nodes`,
:func:`~nixshard.doctor_nodes.probe_writes`,
:func:`~nixshard.doctor_nixconf.probe_gateway`,
:func:`~nixshard.doctor_nixconf.nix_settings`) only observe and report
failures as observations, never raise.  The checks of the nodes are in
:mod:`nixshard.doctor_nodes`, those of the gateway and nix.conf in
:mod:`nixshard.doctor_nixconf`; :func:`nixshard.doctor_cli.run_checks` runs
them all in order.

What is checked, and against what:

``network``   the network file: publishers listed, no node listed twice.
``reach``     every node answers ``GET /healthz`` (a bucket: a HeadBucket),
              within ``timeout`` seconds; its free space.
``clock``     each node's clock against this machine's, from the HTTP ``Date``
              header of its ``/healthz`` answer (aiohttp sets it on every
              answer; one-second resolution).  A node refuses a signed write
              whose date is more than
              :data:`~storage_network.wire.write_auth.MAX_SKEW_SECONDS` (300) from its
              own clock (``storage_node/write_auth.py``), so the publisher's
              and every node's clock must agree within that; run the doctor on
              the publisher to compare exactly the clocks that matter.
``node id``   the ``node_id`` a node reports in ``/healthz`` (its ``--node-id``)
              against its id in the network file: writes are signed for the
              file's id and a node refuses writes signed for another.
``keys``      the signing key is one of the file's publishers; a private
              network's cache secret (needed by publishers and gateways) is
              present and parses; a public network has none.
``writes``    with a signing key: a signed ``POST /shards/has`` with
              ``"touch": true`` of a shard id no node holds, which changes
              nothing but passes every check a real write passes (key
              accepted, node binding, date window, nonce).
``gateway``   ``GET /healthz`` and ``GET /nix-cache-info`` of the gateway.
``nix.conf``  the gateway is a substituter, a publisher key is trusted,
              ``fallback`` and ``connect-timeout`` are set, and credentials are
              in the netrc file when the gateway asks for them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nix_records import (
    CacheSecretConfigError,
    SecretError,
    SigningKeyError,
    UnlistedPublisherError,
    load_keyring,
    load_signing_key,
)
from storage_network import Network, Publisher


class Level(enum.Enum):
    """How bad a finding is.  Only :attr:`PROBLEM` makes the doctor exit 1."""

    OK = "ok"
    SKIPPED = "skipped"
    WARNING = "warning"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Finding:
    """One thing the doctor found.

    Attributes:
        check: which check (``network``, ``reach``, ``clock``, ``node id``, ``keys``,
            ``writes``, ``gateway``, ``nix.conf``).
        level: how bad.
        subject: what it is about: a node id, ``network file``, a file path, a URL.
        message: what is wrong (or right) and what to do, in words.
    """

    check: str
    level: Level
    subject: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The finding as JSON-ready strings."""
        return {"check": self.check, "level": self.level.value, "subject": self.subject,
                "message": self.message}


def ok(check: str, subject: str, message: str) -> Finding:
    """A finding of level OK."""
    return Finding(check, Level.OK, subject, message)


def problem(check: str, subject: str, message: str) -> Finding:
    """A finding of level PROBLEM."""
    return Finding(check, Level.PROBLEM, subject, message)


def warning(check: str, subject: str, message: str) -> Finding:
    """A finding of level WARNING."""
    return Finding(check, Level.WARNING, subject, message)


def skipped(check: str, subject: str, message: str) -> Finding:
    """A finding of level SKIPPED (not checked, and why)."""
    return Finding(check, Level.SKIPPED, subject, message)


# --- the network file --------------------------------------------------------------------


def check_network(network: Network) -> list[Finding]:
    """Publishers listed; no node URL listed twice (one node would hold two shards of a
    stripe and its loss would cost both)."""
    found = []
    if network.publishers:
        found.append(ok("network", "network file",
                        f"{network.k}-of-{network.n} over {len(network.nodes)} nodes, "
                        f"publishers: {', '.join(sorted(network.publishers))}"
                        + (", private" if network.private else "")))
    else:
        found.append(problem(
            "network", "network file",
            "lists no publishers: gateways serve only records signed by a listed key and "
            "nodes started with --network accept none; add the public key of the signing "
            "key to `publishers`"))
    by_url: dict[str, list[str]] = {}
    for node in network.nodes:
        by_url.setdefault(node.url.rstrip("/").lower(), []).append(node.id)
    for url, ids in by_url.items():
        if len(ids) > 1:
            found.append(problem(
                "network", "network file",
                f"{' and '.join(ids)} have one URL ({url}): that one node would hold several "
                "shards of a stripe, and losing it loses them all; give each node its own "
                "entry"))
    return found


# --- keys -------------------------------------------------------------------------------


def check_signing_key(network: Network, key_file: str | None, environ: Mapping[str, str]
                      ) -> tuple[list[Finding], Publisher | None]:
    """The signing key (``key_file``, else ``$NIXSHARD_SIGNING_KEY``) loads and is one of
    the network file's publishers.

    Returns:
        The findings and the key's publisher (None when none was given or it is unusable).
    """
    if key_file is None and not environ.get("NIXSHARD_SIGNING_KEY", "").strip():
        return [skipped("keys", "signing key",
                        "no --signing-key and no $NIXSHARD_SIGNING_KEY: the publisher key and "
                        "signed writes are not checked")], None
    try:
        key = load_signing_key(key_file, environ, network=network)
    except UnlistedPublisherError as exc:
        return [problem("keys", "signing key",
                        f"{exc}. Until then nodes refuse its writes and gateways its records "
                        "(nodes read the list at start: restart them after changing it)")], None
    except SigningKeyError as exc:
        return [problem("keys", "signing key", str(exc))], None
    return [ok("keys", "signing key",
               f"{key.publisher.name} is one of the network file's publishers")], key.publisher


def check_cache_secret(network: Network, secret_file: str | None, environ: Mapping[str, str],
                       publishing: bool) -> list[Finding]:
    """A private network's keyring (``secret_file``, else ``$NIXSHARD_CACHE_SECRET``).

    Publishers and gateways need it; nodes, audit, repair and gc do not.  So a
    missing secret is a problem only when ``publishing`` (a signing key was
    given: this machine publishes), else it is not checked.  A secret given for a
    public network, or one that does not parse, is always a problem.
    """
    given = secret_file is not None or bool(environ.get("NIXSHARD_CACHE_SECRET", "").strip())
    if not network.private and not given:
        return []
    if network.private and not given and not publishing:
        return [skipped("keys", "cache secret",
                        "the network is private: push and serve need its cache secret "
                        "(--cache-secret FILE or $NIXSHARD_CACHE_SECRET); give it here to "
                        "check it")]
    try:
        keyring = load_keyring(secret_file, environ, network)
    except (CacheSecretConfigError, SecretError) as exc:
        return [problem("keys", "cache secret", str(exc))]
    assert keyring is not None
    names = ", ".join(s.name for s in keyring)
    return [ok("keys", "cache secret", f"the keyring holds {names} (newest first)")]


# --- combining findings ----------------------------------------------------------------


def merge_findings(findings: Sequence[Finding], more: Sequence[Finding]) -> list[Finding]:
    """``findings`` followed by ``more``, where a problem of ``more`` about the same check
    and subject as a problem already found is folded into that one (``; and ...``)
    instead of being listed twice: the signed write probe confirms the clock and
    node-id problems ``/healthz`` showed."""
    merged = list(findings)
    for extra in more:
        for i, known in enumerate(merged):
            if (extra.level is Level.PROBLEM and known.level is Level.PROBLEM
                    and (known.check, known.subject) == (extra.check, extra.subject)):
                merged[i] = Finding(known.check, known.level, known.subject,
                                    f"{known.message}; and {extra.message}")
                break
        else:
            merged.append(extra)
    return merged


def exit_status(findings: Sequence[Finding]) -> int:
    """0 when no finding is a problem, else 1."""
    return 1 if any(f.level is Level.PROBLEM for f in findings) else 0

"""``nixshard use URL --key KEY``: make a gateway a substituter of this machine's Nix,
as ``cachix use`` does for a Cachix cache.

It adds to a nix.conf (default: ``~/.config/nix/nix.conf`` for a user,
``/etc/nix/nix.conf`` for root)::

    extra-substituters = URL                 Nix asks the gateway for store paths
    extra-trusted-public-keys = KEY ...      and accepts what the publisher signed
    extra-trusted-substituters = URL         (root's file only) users of the daemon may use it
    fallback = true                          a failed download is built instead
    connect-timeout = 5                      an unreachable gateway costs seconds, not minutes

and, with ``--user``, a netrc entry for a gateway that needs credentials
(``netrc-file`` in nix.conf, ``machine HOST login USER password ...`` in the
netrc file, mode 0600); the password is asked for (not echoed) or read from
standard input with ``--password-stdin``, as ``nixshard credentials add`` does,
and never printed.

Re-running changes nothing: a value already in effect in the file (through
any line, ``extra-`` or not, or a file it includes) is not written again, and
a scalar the file already sets (``fallback = false``, say) is kept and
reported, never overwritten.  New lines are appended at the end of the file,
after any plain ``substituters =`` line, which would otherwise reset them.

The nix.conf reading and editing (:class:`~nixshard.nix_conf.NixConf`:
``name = value`` lines, ``#`` comments, ``extra-`` prefixes, the old
aliases, ``include`` and ``!include``) is in :mod:`nixshard.nix_conf`, which
``nixshard doctor`` uses to read a given nix.conf too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import click

from nix_formats.errors import NixFormatError
from nix_formats.keys import PublicKey

from .nix_conf import (
    NixConf,
    NixConfError,
    error_reason,
    system_nix_conf,
    user_nix_conf,
    write_atomic,
)
from .password_prompt import read_password

DEFAULT_CONNECT_TIMEOUT = 5
"""Seconds written as ``connect-timeout`` (Nix's default, 0, leaves it to curl: minutes)."""

WHY = {
    "substituters": "Nix asks the gateway for store paths before building them "
                    "(beside the substituters set elsewhere, e.g. cache.nixos.org)",
    "trusted-public-keys": "Nix accepts a path only when a trusted key signed it; this is "
                           "the publisher key of the network",
    "trusted-substituters": "users of the Nix daemon who are not in trusted-users may "
                            "then use the gateway too (--option substituters URL)",
    "fallback": "when a download from the gateway fails, Nix builds the path instead of "
                "failing the build",
    "connect-timeout": "seconds Nix waits to connect to a substituter; the default (0) "
                       "leaves it to curl, minutes per attempt, e.g. off the LAN",
    "netrc-file": "Nix (curl) reads the gateway's credentials from this file",
}
"""Why each line is written, as ``nixshard use`` prints it."""


# --- netrc -------------------------------------------------------------------------------

_NETRC_WORD = re.compile(r"\A[^\s\"'\\]+\Z")


def netrc_with_entry(text: str, host: str, user: str, password: str) -> tuple[str, str]:
    """``text`` (a netrc file) with the one entry of machine ``host`` set to ``user`` and
    ``password``; every other entry is kept, one entry a line.

    Returns:
        The new text and what happened: ``"added"``, ``"replaced"`` or ``"present"``.

    Raises:
        NixConfError: ``text`` holds a ``macdef`` (not rewritten), or the user or
            password holds whitespace, quotes or backslashes (curl's netrc
            reader on older systems cannot read them back).
    """
    for what, word in (("user", user), ("password", password)):
        if not _NETRC_WORD.fullmatch(word):
            raise NixConfError(f"the {what} for the netrc file must be one word without "
                               "quotes or backslashes (curl's netrc reader cannot read it)")
    tokens = text.split()
    if "macdef" in tokens:
        raise NixConfError("the netrc file holds a macdef; add the entry by hand: "
                           f"machine {host} login {user} password ...")
    entries: list[list[str]] = []
    for token in tokens:
        if token in ("machine", "default") or not entries:
            entries.append([])
        entries[-1].append(token)
    wanted = ["machine", host, "login", user, "password", password]
    status = "added"
    kept: list[list[str]] = []
    for entry in entries:
        if entry[:2] == ["machine", host]:
            status = "present" if entry == wanted and status == "added" else "replaced"
            continue
        kept.append(entry)
    default = [e for e in kept if e[:1] == ["default"]]
    machines = [e for e in kept if e[:1] != ["default"]]
    lines = [" ".join(e) for e in (*machines, wanted, *default)]
    return "".join(line + "\n" for line in lines), status


def write_netrc(path: Path, text: str) -> None:
    """Write the netrc ``text`` to ``path`` (its symlink target, if a symlink) readable by
    its owner only: a new file of mode 0600 from the start, renamed over the old one
    whatever its mode was (:func:`~nixshard.private_file.write_private`).

    Raises:
        NixConfError: it cannot be written.
    """
    write_atomic(path, text, 0o600, keep_mode=False)


# --- where and what ----------------------------------------------------------------------


def default_nix_conf(uid: int, environ: Mapping[str, str]) -> Path:
    """The nix.conf ``nixshard use`` edits: root's is ``$NIX_CONF_DIR/nix.conf``
    (``/etc/nix/nix.conf``), a user's ``$XDG_CONFIG_HOME/nix/nix.conf``
    (``~/.config/nix/nix.conf``)."""
    return system_nix_conf(environ) if uid == 0 else user_nix_conf(environ)


def gateway_url(text: str, param_hint: str = "URL") -> str:
    """``text`` as a substituter URL: ``http(s)://host[:port][/path]``, no trailing slash.

    Raises:
        click.BadParameter: another scheme, no host, a query, fragment or credentials
            (``param_hint`` names the parameter in the message).
    """
    url = text.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{text!r} is not an http:// or https:// URL of a gateway",
                                 param_hint=param_hint)
    if parts.query or parts.fragment:
        raise click.BadParameter(f"{text!r}: a gateway URL has no ?query or #fragment",
                                 param_hint=param_hint)
    if parts.username or parts.password:
        raise click.BadParameter(f"{text!r}: credentials never go in the URL (Nix logs it); "
                                 "use --user and --netrc", param_hint=param_hint)
    return url


def public_key(text: str) -> PublicKey:
    """A ``--key``: ``name:base64`` (32 bytes) or a file holding it (``public.key``).

    Raises:
        click.BadParameter: unreadable file, or not a Nix public key.
    """
    source = text
    if ":" not in text or Path(text).is_file():  # base64 may hold '/': a ':' means key text
        try:
            text = Path(text).read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {source}: {error_reason(exc)}",
                                     param_hint="--key") from exc
    try:
        return PublicKey.parse(text)
    except NixFormatError as exc:
        where = f"{source}: " if source != text else ""
        raise click.BadParameter(f"{where}{exc}", param_hint="--key") from exc


def _is_system_conf(path: Path) -> bool:
    """True when ``path`` is the nix.conf the Nix daemon reads (``$NIX_CONF_DIR/nix.conf``)."""
    return path.absolute() == default_nix_conf(0, os.environ).absolute()


def _read_only_reason(path: Path) -> str | None:
    """Why ``path`` must not be edited: a NixOS /etc/nix/nix.conf (a link into the store)."""
    try:
        resolved = str(path.resolve())
    except OSError:
        return None
    if resolved.startswith(("/nix/store/", "/etc/static/")):
        return (f"{path} is generated by NixOS ({resolved}); set it in your configuration "
                "instead: services.nixshard.substituter = { enable = true; url = ...; "
                "publicKey = ...; } (nix/module.nix), or nix.settings.extra-substituters and "
                "nix.settings.extra-trusted-public-keys")
    return None


@dataclass
class Report:
    """What ``nixshard use`` did, line by line, for printing."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, status: str, line: str, why: str) -> None:
        """One row: ``status`` (added/present/kept/replaced), the line, why."""
        self.rows.append((status, line, why))


@click.command("use")
@click.argument("url")
@click.option("--key", "keys", multiple=True, required=True, metavar="NAME:BASE64|FILE",
              help="A publisher public key whose signatures Nix must trust: the network "
                   "file's `publishers` (repeatable; `name:base64` or a file holding it).")
@click.option("--nix-conf", "nix_conf", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The nix.conf to change [default: /etc/nix/nix.conf for "
                                 "root, ~/.config/nix/nix.conf for a user].")
@click.option("--netrc", "netrc", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="With --user: the netrc file for the credentials [default: "
                                 "the file's netrc-file, else `netrc` beside the nix.conf].")
@click.option("--user", default=None, metavar="USER",
              help="A login for a gateway that needs credentials (a private network, or "
                   "--read-auth); the password is asked for, or read with --password-stdin.")
@click.option("--password-stdin", is_flag=True,
              help="With --user: read the password from standard input (one line).")
@click.option("--connect-timeout", type=click.IntRange(min=1), default=DEFAULT_CONNECT_TIMEOUT,
              show_default=True, help="Seconds written as connect-timeout.")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
def use_command(url: str, keys: tuple[str, ...], nix_conf: Path | None, netrc: Path | None,
                user: str | None, password_stdin: bool, connect_timeout: int,
                dry_run: bool) -> None:
    """Use the gateway at URL as a substituter: add its lines to nix.conf.

    Writes extra-substituters, extra-trusted-public-keys, fallback = true and
    connect-timeout (and, in root's file, extra-trusted-substituters); with
    --user, a netrc entry and netrc-file.  Lines already in effect are not
    written again, and a fallback or connect-timeout the file already sets is
    kept.  Root's file is read by the Nix daemon: restart it afterwards.
    """
    url = gateway_url(url)
    public = [public_key(k) for k in keys]
    if netrc is not None and user is None:
        raise click.UsageError("--netrc names where credentials go: give --user too")
    if password_stdin and user is None:
        raise click.UsageError("--password-stdin reads the password of --user: give --user too")
    target = nix_conf if nix_conf is not None else default_nix_conf(os.geteuid(), os.environ)
    system = _is_system_conf(target)
    why_not = _read_only_reason(target)
    if why_not is not None:
        raise click.ClickException(why_not)
    note = f"added by `nixshard use {url}`"
    report = Report()
    try:
        conf = NixConf.read(target)
        status = conf.add_word("substituters", url, note)
        report.add(status, f"extra-substituters = {url}", WHY["substituters"])
        for key in public:
            status = conf.add_word("trusted-public-keys", key.text(), note)
            report.add(status, f"extra-trusted-public-keys = {key.text()}",
                       WHY["trusted-public-keys"])
            others = [k for k in conf.settings().get("trusted-public-keys", [])
                      if k.split(":", 1)[0] == key.name and k != key.text()]
            for other in others:
                report.add("warning", f"trusted-public-keys also holds {other}",
                           f"another key named {key.name!r}: is it an old one? "
                           "Nix trusts both")
        if system:
            status = conf.add_word("trusted-substituters", url, note)
            report.add(status, f"extra-trusted-substituters = {url}",
                       WHY["trusted-substituters"])
        for name, value in (("fallback", "true"), ("connect-timeout", str(connect_timeout))):
            status, shown = conf.set_default(name, value, note)
            why = WHY[name] if status != "kept" else (
                f"your setting, left alone; `nixshard use` would write {value}: {WHY[name]}")
            report.add(status, f"{name} = {shown}", why)
        password = (read_password(password_stdin, "Password for the gateway")
                    if user is not None else "")
        netrc_plan = _plan_netrc(conf, netrc, user, password, url, note, report)
        if not dry_run:
            if conf.changed:
                conf.write()
            if netrc_plan is not None:
                write_netrc(*netrc_plan)
    except NixConfError as exc:
        raise click.ClickException(str(exc)) from exc
    _print(target, conf, report, dry_run, system)


def _plan_netrc(conf: NixConf, netrc: Path | None, user: str | None, password: str, url: str,
                note: str, report: Report) -> tuple[Path, str] | None:
    """Add ``netrc-file`` to ``conf`` and work out the netrc file's new text (not written).

    Raises:
        NixConfError: the nix.conf names another netrc file than ``--netrc``, or the
            netrc file cannot be read or changed.
    """
    if user is None:
        return None
    named = conf.settings().get("netrc-file")
    current = Path(named[0]) if named else None
    if netrc is None:
        netrc = current or conf.path.parent / "netrc"
    netrc = Path(os.path.abspath(netrc))  # Nix wants an absolute path and does not expand ~
    if current is not None and current != netrc:
        raise NixConfError(
            f"{conf.path} already names netrc-file = {current}; Nix reads one netrc file, "
            f"so give --netrc {current} (or change that line yourself)")
    status, _ = conf.set_default("netrc-file", str(netrc), note)
    report.add(status, f"netrc-file = {netrc}", WHY["netrc-file"])
    try:
        old = netrc.read_text(encoding="utf-8") if netrc.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise NixConfError(f"cannot read {netrc}: {error_reason(exc)}") from exc
    host = urlsplit(url).hostname or ""
    text, status = netrc_with_entry(old, host, user, password)
    report.add(status, f"{netrc}: machine {host} login {user} password ...",
               "curl matches the entry by host name (any port); mode 0600")
    return (netrc, text) if status != "present" else None


def _print(target: Path, conf: NixConf, report: Report, dry_run: bool, system: bool) -> None:
    verb = {"added": "would add" if dry_run else "added",
            "replaced": "would replace" if dry_run else "replaced"}
    click.echo(f"{target}{' (dry run: nothing written)' if dry_run else ''}:")
    for status, line, why in report.rows:
        click.echo(f"  {verb.get(status, status):<13} {line}")
        click.echo(f"  {'':<13} ({why})")
    if dry_run and conf.changed:
        click.echo(f"\n{target} would then read:\n")
        click.echo(conf.text(), nl=False)
    if not any(status in ("added", "replaced") for status, _, _ in report.rows):
        click.echo("nothing to change: every line is in effect already")
    if system:
        click.echo("\nThe Nix daemon reads this file when it starts: restart it "
                   "(`systemctl restart nix-daemon`; a Nix without a daemon reads it at once).")
    else:
        click.echo(
            "\nOn a multi-user install the Nix daemon takes substituters and keys from a "
            "user's nix.conf only if that user is in trusted-users (else it warns \"ignoring "
            "untrusted substituter\"): if you are not, run `sudo nixshard use ...` instead, "
            "which writes /etc/nix/nix.conf.")
    click.echo("Check the setup with `nixshard doctor --network FILE --gateway URL`.")

"""Credentials for private upstream caches: the ``Authorization`` header each host gets.

:class:`UpstreamAuth` holds it, from a netrc file (``--upstream-netrc``:
basic auth, the format Nix and curl read, matched by host name; a
``default`` entry applies to every host) and a token file
(``--upstream-token-file``: ``HOST TOKEN`` lines, sent as ``Authorization:
Bearer TOKEN``; ``HOST`` is a host name, ``HOST:PORT`` for one port only);
a token wins over a netrc entry for the same host.  The header goes with
every request to that upstream (:class:`cache_server.upstream.Upstreams`),
and only there: redirects never leave the upstream.  Credentials are never
logged nor put in an error message, and an upstream URL carrying them
(``https://user:pw@host``) is refused
(:func:`cache_server.upstream_urls.check_upstream_url`).
"""

from __future__ import annotations

import base64
import netrc
import re
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "UpstreamAuth",
    "UpstreamAuthError",
]

_TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: safe in a header
_QUOTED_RE = re.compile(r"'[^']*'|\"[^\"]*\"")


class UpstreamAuthError(ValueError):
    """A netrc or token file that cannot be read or parsed.  The message names the file
    (and line), never a secret."""


def _unreadable(kind: str, path: str, exc: OSError | UnicodeDecodeError) -> UpstreamAuthError:
    """The error for a ``kind`` (``netrc``, ``token``) file that cannot be read as text."""
    if isinstance(exc, UnicodeDecodeError):
        return UpstreamAuthError(f"{path}: not a {kind} file (not UTF-8 text)")
    return UpstreamAuthError(f"cannot read the {kind} file {path}: {exc.strerror or exc}")


def _port(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError:
        port = None
    return port or (443 if parts.scheme == "https" else 80)


class UpstreamAuth:
    """The ``Authorization`` header of each upstream host (see the module docstring).

    ``basic``: lower-case host name (or ``default``) -> (login, password), as a
    netrc file gives them; ``tokens``: lower-case ``host`` or ``host:port`` ->
    bearer token.  ``repr`` shows counts, never a secret.
    """

    def __init__(self, basic: Mapping[str, tuple[str, str]] | None = None,
                 tokens: Mapping[str, str] | None = None) -> None:
        self._basic = {host.lower(): pair for host, pair in (basic or {}).items()}
        self._tokens = {host.lower(): token for host, token in (tokens or {}).items()}

    def __repr__(self) -> str:
        return f"UpstreamAuth({len(self._basic)} netrc entries, {len(self._tokens)} tokens)"

    @classmethod
    def load(cls, netrc_file: str | None = None,
             token_file: str | None = None) -> UpstreamAuth:
        """The credentials of a netrc file and a token file (either may be None).

        Raises:
            UpstreamAuthError: a file that cannot be read, a malformed netrc
                (its line number), a netrc login with ``:`` (basic auth cannot
                send it), or a token-file line that is not ``HOST TOKEN`` with a
                token of visible ASCII, or a host given twice.
        """
        basic: dict[str, tuple[str, str]] = {}
        if netrc_file is not None:
            try:
                parsed = netrc.netrc(netrc_file)
            except netrc.NetrcParseError as exc:
                # the parser's message may quote a token of the file: keep none of them
                reason = _QUOTED_RE.sub("'...'", exc.msg)
                raise UpstreamAuthError(f"{netrc_file} line {exc.lineno}: not a netrc file "
                                        f"({reason})") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise _unreadable("netrc", netrc_file, exc) from None
            for host, (login, _account, password) in parsed.hosts.items():
                if ":" in (login or ""):
                    raise UpstreamAuthError(f"{netrc_file}: the login of machine {host} has "
                                            "a ':', which HTTP basic auth cannot send")
                if login or password:
                    basic[host] = (login or "", password or "")
        tokens: dict[str, str] = {}
        if token_file is not None:
            try:
                with open(token_file, encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise _unreadable("token", token_file, exc) from None
            for number, raw in enumerate(text.splitlines(), 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                fields = line.split()
                if len(fields) != 2 or not _TOKEN_RE.fullmatch(fields[1]):
                    raise UpstreamAuthError(
                        f"{token_file} line {number}: want HOST TOKEN (the upstream's host "
                        "name, or HOST:PORT, then its bearer token of visible ASCII)")
                host = fields[0].lower()
                if host in tokens:
                    raise UpstreamAuthError(f"{token_file} line {number}: host {host} "
                                            "given twice")
                tokens[host] = fields[1]
        return cls(basic, tokens)

    def _token(self, parts: SplitResult) -> str | None:
        host = (parts.hostname or "").lower()
        shown = f"[{host}]" if ":" in host else host
        return self._tokens.get(f"{shown}:{_port(parts)}") or self._tokens.get(shown)

    def _lookup(self, url: str) -> tuple[str, str | None]:
        """The ``Authorization`` header value for ``url`` (None: none) and where it
        comes from, for logs (no secret); the one place that says which wins."""
        parts = urlsplit(url)
        token = self._token(parts)
        if token is not None:
            return "a bearer token (token file)", f"Bearer {token}"
        host = (parts.hostname or "").lower()
        machine = host if host in self._basic else "default"
        pair = self._basic.get(machine)
        if pair is None:
            return "no credentials", None
        source = f"netrc machine {host}" if machine == host else "netrc default"
        login, password = pair
        return (f"basic auth ({source})",
                "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii"))

    def authorization(self, url: str) -> str | None:
        """The ``Authorization`` header value for requests to ``url``, or None."""
        return self._lookup(url)[1]

    def describe(self, url: str) -> str:
        """What ``url`` gets, for logs: ``a bearer token``, ``basic auth (netrc machine
        HOST)``, ``basic auth (netrc default)`` or ``no credentials`` (no secret)."""
        return self._lookup(url)[0]

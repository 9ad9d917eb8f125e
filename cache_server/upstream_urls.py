"""The URLs an upstream cache may make the gateway fetch, and its base URL.

Nothing an upstream sends unsigned widens what the gateway fetches: a narinfo
``URL`` must be a plain relative path under that upstream
(:func:`relative_url_problem`), a redirect must stay under the upstream's base
URL (:func:`redirect_problem`), and a base URL must be a plain ``http(s)://``
URL without credentials (:func:`check_upstream_url`).  Used by
:mod:`cache_server.upstream`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

__all__ = ["check_upstream_url", "redirect_problem", "relative_url_problem"]

_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\?#]")


def relative_url_problem(url: str) -> str | None:
    """Why ``url`` (a narinfo ``URL:``) is not a safe path relative to a cache, or None.

    Rejected: a scheme or host (``http://...``, ``//host/...``), an absolute
    path, a ``.`` or ``..`` segment (also percent-encoded), an empty segment,
    a backslash, ``?``, ``#``, whitespace or control characters.  (Nix itself
    would follow an absolute ``http(s)://`` URL; a gateway must not fetch
    wherever an upstream points it.)
    """
    if not url:
        return "the URL is empty"
    if _BAD_URL_CHARS.search(url):
        return "the URL contains whitespace, a control character, '\\', '?' or '#'"
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith("//"):
        return "the URL is absolute (has a scheme or host)"
    if url.startswith("/"):
        return "the URL is an absolute path"
    for segment in url.split("/"):
        decoded = unquote(segment)
        if decoded in ("", ".", ".."):
            return f"the URL has a {decoded or 'empty'!r} path segment"
        if "/" in decoded or "\\" in decoded:
            return "the URL has a percent-encoded '/' or '\\'"
    return None


def check_upstream_url(url: str) -> str:
    """``url`` without a trailing ``/`` if it can be an upstream's base URL.

    Raises:
        ValueError: not ``http(s)://host...``, a query or fragment, or credentials
            in it (the message does not repeat them).
    """
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"upstream URL {parts.scheme}://...@{parts.hostname} carries "
                         "credentials: put them in --upstream-netrc or --upstream-token-file")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"upstream URL {url!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError(f"upstream URL {url!r} must not have a query or fragment")
    return url.rstrip("/")


def redirect_problem(base: str, target: str) -> str | None:
    """Why a redirect to absolute URL ``target`` leaves upstream ``base``, or None.

    ``target`` must have ``base``'s scheme and host and continue its path
    with a safe relative path (:func:`relative_url_problem`).
    """
    if not target.startswith(base + "/"):
        return f"it leads outside {base}/"
    return relative_url_problem(target[len(base) + 1:])

"""Upstream binary caches asked on a miss (e.g. ``https://cache.nixos.org``).

:class:`Upstreams` asks each configured cache in order for
``<base>/<hash>.narinfo``, like Nix asks its ``substituters`` (first that has
the path wins; Nix ``src/libstore/binary-cache-store.cc`` and
``http-binary-cache-store.cc``), and accepts an answer only if it is a valid
narinfo (Nix ``src/libstore/nar-info.cc``) for the asked store-path hash,
whose ``URL`` is a plain relative path, signed (``Sig:``) by one of the
trusted keys.  A narinfo that fails any of these is logged (warning, with the
reason) and treated as "this upstream does not have it".

Status codes follow Nix: 404, 403 and 410 mean "not here"; anything else
that is not a 200 (5xx, 429, ...), a refused connection, a DNS failure or a
timeout means "could not be asked".  An upstream that could not be asked is
skipped for ``breaker_seconds`` (a simple circuit breaker), so a dead
upstream costs one timeout per period, not one per request; its first
request after that period tries it again.

Nothing an upstream sends unsigned widens what the gateway fetches: a
narinfo ``URL`` must be a plain relative path under that upstream
(:func:`relative_url_problem`), and a redirect is followed only to a URL
under the same upstream's base URL (at most :data:`MAX_REDIRECTS`; any other
counts as a failure of that upstream), so an upstream can never make the
gateway fetch from another host.

Private upstreams: the ``Authorization`` header each upstream host gets
(``--upstream-netrc``, ``--upstream-token-file``) is worked out by
:class:`~cache_server.upstream_auth.UpstreamAuth`; it goes with every
request to that upstream, and only there: redirects never leave the
upstream.  Credentials are never logged nor put in an error message, and
an upstream URL carrying them (``https://user:pw@host``) is refused.

The caller owns the :class:`aiohttp.ClientSession`; its ``raise_for_status``
setting is overridden per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp

from nix_formats.errors import NixFormatError
from nix_formats.keys import PublicKey, verify_narinfo
from nix_formats.narinfo import NarInfo
from nix_formats.store_path import STORE_DIR, validate_hash_part

from .errors import CacheServerError
from .upstream_auth import UpstreamAuth
from .upstream_urls import check_upstream_url, redirect_problem, relative_url_problem

__all__ = [
    "DEFAULT_BREAKER_SECONDS",
    "MAX_NARINFO_BYTES",
    "MAX_REDIRECTS",
    "UpstreamHit",
    "UpstreamUnavailableError",
    "Upstreams",
    "check_upstream_url",
    "relative_url_problem",
]

log = logging.getLogger("nixshard.serve.upstream")

#: Seconds an upstream that could not be asked is skipped.
DEFAULT_BREAKER_SECONDS = 30.0
#: Largest narinfo accepted from an upstream, bytes.
MAX_NARINFO_BYTES = 1 << 20
#: Redirects followed per request (each must stay under the upstream's base URL).
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Statuses Nix takes as "the cache does not have this path".
_ABSENT = frozenset({403, 404, 410})


class UpstreamUnavailableError(CacheServerError):
    """No upstream had the path and at least one could not be asked (or a NAR fetch failed).

    The message names each such upstream and its error; ``status`` is the
    upstream's HTTP status when it answered one (None: not reached, or skipped).
    """

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UpstreamHit:
    """An accepted narinfo from an upstream.

    ``index``: position of the upstream in the configured list; ``base_url``:
    its base URL (no trailing ``/``); ``narinfo``: the parsed narinfo;
    ``text``: the narinfo exactly as the upstream sent it.
    """

    index: int
    base_url: str
    narinfo: NarInfo
    text: str


class _Failure(Exception):
    """An upstream could not be asked (internal; carries the reason)."""


async def _get_within(session: aiohttp.ClientSession, base: str, url: str,
                      **kwargs: object) -> aiohttp.ClientResponse:
    """GET ``url``, following at most :data:`MAX_REDIRECTS` redirects that stay under
    ``base``; the final response, headers read (release it).

    Raises:
        _Failure: a redirect without Location, leaving ``base``, or one too many.
        TimeoutError, aiohttp.ClientError, OSError: from the session.
    """
    for _ in range(MAX_REDIRECTS + 1):
        response = await session.get(url, allow_redirects=False, raise_for_status=False,
                                     **kwargs)  # type: ignore[arg-type]
        if response.status not in _REDIRECTS:
            return response
        location = response.headers.get("Location")
        response.release()
        if not location:
            raise _Failure(f"GET {url}: HTTP {response.status} without a Location")
        target = urljoin(url, location)
        problem = redirect_problem(base, target)
        if problem is not None:
            raise _Failure(f"GET {url}: redirect to {target[:200]!r} refused: {problem}")
        url = target
    raise _Failure(f"GET {url}: more than {MAX_REDIRECTS} redirects")


class Upstreams:
    """The configured upstream caches, asked in order (see the module doc).

    ``urls``: base URLs (``http``/``https``; a trailing ``/`` is ignored);
    ``keys``: the public keys a narinfo must be signed by (one valid ``Sig:``
    by any of them suffices); ``session``: the caller's client session;
    ``timeout``: seconds for a whole narinfo request, and for connecting and
    for each read of a NAR; ``breaker_seconds``: how long an upstream that
    could not be asked is skipped; ``store_dir``: the store directory
    narinfos must use; ``clock``: monotonic seconds (for tests); ``auth``:
    the ``Authorization`` header each upstream gets (None: none).

    Raises ``ValueError`` for a URL that is not ``http(s)://host...``, has a
    query, a fragment or credentials in it, or a non-positive timeout.
    """

    def __init__(
        self,
        urls: Sequence[str],
        keys: Sequence[PublicKey],
        session: aiohttp.ClientSession,
        timeout: float = 10.0,
        *,
        breaker_seconds: float = DEFAULT_BREAKER_SECONDS,
        store_dir: str = STORE_DIR,
        clock: Callable[[], float] = time.monotonic,
        auth: UpstreamAuth | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"upstream timeout must be positive, got {timeout}")
        bases = [check_upstream_url(url) for url in urls]
        self.urls: tuple[str, ...] = tuple(bases)
        self.keys: tuple[PublicKey, ...] = tuple(keys)
        self._session = session
        self._timeout = timeout
        self._breaker_seconds = breaker_seconds
        self._store_dir = store_dir
        self._clock = clock
        # Per upstream: until when it is skipped (clock seconds) and why.
        self._down_until = [0.0] * len(bases)
        self._down_reason = [""] * len(bases)
        # Per upstream: the headers every request to it carries (its Authorization).
        self._headers: list[dict[str, str]] = []
        for base in bases:
            header = auth.authorization(base) if auth is not None else None
            self._headers.append({"Authorization": header} if header is not None else {})

    # -- public --------------------------------------------------------------------------

    async def narinfo(self, hash_part: str) -> UpstreamHit | None:
        """The first upstream's acceptable narinfo for ``hash_part``, in configured order.

        Returns None when every upstream answered 404/403/410 or sent no
        acceptable narinfo.  Raises :class:`UpstreamUnavailableError` (naming
        each upstream that could not be asked and why, including those
        skipped by the circuit breaker) when none had it and at least one could
        not be asked; :class:`~nix_formats.errors.StorePathError` if
        ``hash_part`` is not 32 nix32 characters.
        """
        validate_hash_part(hash_part)
        unavailable: list[str] = []
        for index, base in enumerate(self.urls):
            skipped = self._skipped(index)
            if skipped is not None:
                unavailable.append(f"{base}: {skipped}")
                continue
            try:
                text = await self._get_narinfo(index, hash_part)
            except _Failure as exc:
                self._trip(index, str(exc))
                unavailable.append(f"{base}: {exc}")
                continue
            self._down_until[index] = 0.0
            if text is None:
                continue
            narinfo = self._accept(base, hash_part, text)
            if narinfo is not None:
                return UpstreamHit(index, base, narinfo, text)
        if unavailable:
            raise UpstreamUnavailableError(
                f"no upstream has {hash_part}.narinfo and "
                f"{len(unavailable)} could not be asked: " + "; ".join(unavailable)
            )
        return None

    def nar_url(self, index: int, url: str) -> str:
        """The absolute URL of ``url`` (a narinfo ``URL:``) on upstream ``index``.

        Raises ``ValueError`` if ``url`` is not a safe relative path (see
        :func:`relative_url_problem`) and ``IndexError`` for a bad index.
        """
        problem = relative_url_problem(url)
        if problem is not None:
            raise ValueError(f"narinfo URL {url!r}: {problem}")
        return f"{self.urls[index]}/{url}"

    async def open_nar(self, hit: UpstreamHit) -> aiohttp.ClientResponse:
        """Start the GET of ``hit``'s NAR file (compressed as ``hit.narinfo.compression``).

        See :meth:`open_file` (no range: a 200 is required).
        """
        return await self.open_file(hit.index, hit.narinfo.url)

    async def open_file(self, index: int, url: str, *,
                        byte_range: str | None = None) -> aiohttp.ClientResponse:
        """Start the GET of ``url`` (relative, e.g. a narinfo ``URL:``) on upstream ``index``.

        Returns the response once a 200 (or, with ``byte_range``, the value
        of a ``Range`` header, a 206) arrived, headers read, body not yet:
        stream ``response.content`` and release it (``async with response:``).
        There is no total deadline; connecting and each read time out after
        ``timeout`` seconds (``TimeoutError`` / ``aiohttp`` errors while
        reading).

        Raises:
            ValueError: ``url`` is not a safe relative path; IndexError: a bad index.
            UpstreamUnavailableError: the upstream is skipped by the circuit
                breaker, cannot be reached, redirects outside itself, or answers
                another status (in ``status``; a 404 for a NAR means the upstream
                lost a NAR its narinfo names).  5xx and 429 trip the breaker.
        """
        full = self.nar_url(index, url)
        base = self.urls[index]
        skipped = self._skipped(index)
        if skipped is not None:
            raise UpstreamUnavailableError(f"{base}: {skipped}")
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._timeout, sock_connect=self._timeout,
            sock_read=self._timeout,
        )
        headers = dict(self._headers[index])
        if byte_range is not None:
            headers["Range"] = byte_range
        try:
            response = await _get_within(self._session, base, full, timeout=timeout,
                                         headers=headers, auto_decompress=False)
        except _Failure as exc:
            self._trip(index, str(exc))
            raise UpstreamUnavailableError(f"{base}: {exc}") from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = _describe(exc, self._timeout)
            self._trip(index, reason)
            raise UpstreamUnavailableError(f"{base}: GET {full}: {reason}") from exc
        if response.status == 200 or (byte_range is not None and response.status == 206):
            return response
        response.release()
        reason = self._status_reason(index, response)
        if response.status >= 500 or response.status == 429:
            self._trip(index, reason)
        raise UpstreamUnavailableError(f"{base}: GET {full}: {reason}", status=response.status)

    # -- internals -----------------------------------------------------------------------

    def _skipped(self, index: int) -> str | None:
        left = self._down_until[index] - self._clock()
        if left <= 0:
            return None
        return f"skipped for another {left:.0f} s after: {self._down_reason[index]}"

    def _trip(self, index: int, reason: str) -> None:
        self._down_until[index] = self._clock() + self._breaker_seconds
        self._down_reason[index] = reason
        log.warning("upstream %s could not be asked (%s); skipping it for %g s",
                    self.urls[index], reason, self._breaker_seconds)

    def _status_reason(self, index: int, response: aiohttp.ClientResponse) -> str:
        """``HTTP <status> <reason>``, with a hint for a 401 (credentials wanted or refused)."""
        reason = f"HTTP {response.status} {response.reason or ''}".rstrip()
        if response.status == 401:
            sent = "were refused" if self._headers[index] else "are needed"
            reason += (f": credentials {sent} (--upstream-netrc, --upstream-token-file)")
        return reason

    async def _get_narinfo(self, index: int, hash_part: str) -> str | None:
        """The narinfo text; None for 404/403/410 or an unreadable body; _Failure otherwise."""
        base = self.urls[index]
        url = f"{base}/{hash_part}.narinfo"
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with await _get_within(self._session, base, url, timeout=timeout,
                                         headers=self._headers[index]) as resp:
                if resp.status in _ABSENT:
                    return None
                if resp.status != 200:
                    raise _Failure(f"GET {url}: {self._status_reason(index, resp)}")
                body = bytearray()
                async for piece in resp.content.iter_chunked(64 * 1024):
                    body += piece
                    if len(body) > MAX_NARINFO_BYTES:
                        log.warning("upstream %s: %s is larger than %d bytes; ignoring it",
                                    base, url, MAX_NARINFO_BYTES)
                        return None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _Failure(f"GET {url}: {_describe(exc, self._timeout)}") from exc
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            log.warning("upstream %s: %s is not UTF-8 (%s); ignoring it", base, url, exc)
            return None

    def _accept(self, base: str, hash_part: str, text: str) -> NarInfo | None:
        """The parsed narinfo if it is acceptable, else None (with a warning saying why)."""
        where = f"upstream {base}: {hash_part}.narinfo"
        try:
            narinfo = NarInfo.parse(text, self._store_dir)
        except NixFormatError as exc:
            log.warning("%s is malformed, ignoring it: %s", where, exc)
            return None
        if narinfo.store_path.hash_part != hash_part:
            log.warning("%s describes another store path (%s), ignoring it",
                        where, narinfo.store_path.in_store(self._store_dir))
            return None
        problem = relative_url_problem(narinfo.url)
        if problem is not None:
            log.warning("%s has URL %r: %s; ignoring it", where, narinfo.url, problem)
            return None
        try:
            signed = verify_narinfo(narinfo, self.keys)
        except NixFormatError as exc:
            log.warning("%s cannot be verified, ignoring it: %s", where, exc)
            return None
        if not signed:
            names = sorted({sig.partition(":")[0] for sig in narinfo.sigs})
            trusted = sorted({key.name for key in self.keys})
            log.warning("%s has no valid signature by a trusted key (signed by: %s; trusted: "
                        "%s), ignoring it", where, ", ".join(names) or "nobody",
                        ", ".join(trusted) or "none")
            return None
        return narinfo


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text

"""Where a program's network comes from: a network file, a signed map, or a bootstrap file.

:func:`open_network` tells the three apart by their content:

- a **signed map** (JSON, ``nixshard map publish`` writes the same) is trusted as
  given, then the newest valid epoch its nodes serve is fetched;
- a **bootstrap file** (TOML with ``maintainers``, ``threshold`` and ``nodes``
  URLs, no ``k``) gives the maintainers of epoch 1 and where to ask: the newest
  valid epoch is fetched, and one must exist;
- anything else is read as a **network file** (:func:`storage_network.config.load_network`).

A network from a map carries :class:`~storage_network.config.MapFollow`: a
:class:`~storage_network.client.NetworkClient` of it asks for newer epochs
every ``every`` seconds while it is open and goes on under each one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path

from storage_network.capped_file import read_capped
from storage_network.config import MapFollow, Network, load_network
from storage_network.errors import MapError, NetworkFileError

from .bootstrap import parse_bootstrap
from .document import MAX_MAP_BYTES
from .fetch import fetch_newest_map
from .signatures import SignedMap, parse_signed_map

DEFAULT_REFRESH_SECONDS = 300.0
"""Seconds between two asks for a newer epoch, by default."""
REFRESH_ENV = "NIXSHARD_MAP_REFRESH_SECONDS"
"""The environment variable that overrides :data:`DEFAULT_REFRESH_SECONDS`."""


def refresh_seconds(environ: Mapping[str, str]) -> float:
    """Seconds between refreshes: ``$NIXSHARD_MAP_REFRESH_SECONDS`` or the default.

    Raises:
        MapError: the variable is not a positive number.
    """
    text = environ.get(REFRESH_ENV)
    if text is None:
        return DEFAULT_REFRESH_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise MapError(f"{REFRESH_ENV}={text!r} must be a positive number of seconds")
    return value


def followed(signed: SignedMap, every: float) -> Network:
    """The network of ``signed``, carrying where it came from (so clients follow it)."""
    return dataclasses.replace(signed.network, follow=MapFollow(signed, every))


def _read(path: Path) -> bytes:
    try:
        return read_capped(path, MAX_MAP_BYTES)
    except OSError as exc:
        raise NetworkFileError(f"cannot read network file {path}: {exc.strerror}") from exc


async def open_network(path: str | Path, *, every: float = DEFAULT_REFRESH_SECONDS,
                       timeout: float = 10.0) -> Network:
    """The network ``path`` gives (see the module docstring).

    Args:
        every: seconds between refreshes of a network from a map (> 0).
        timeout: seconds per node request while fetching maps.

    Raises:
        NetworkFileError: an unreadable or invalid network file.
        MapError: an invalid map or bootstrap file, or (from a bootstrap file) no node
            serves a valid map.
    """
    if not every > 0:
        raise ValueError(f"every must be a positive number of seconds, got {every}")
    path = Path(path)
    data = _read(path)
    if data.lstrip()[:1] == b"{":
        try:
            given = parse_signed_map(data)
        except MapError as exc:
            raise MapError(f"{path}: {exc}") from None
        return followed(await fetch_newest_map(given, timeout=timeout), every)
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        doc = {}  # load_network says what is wrong with it
    if "threshold" in doc and "k" not in doc:
        bootstrap = parse_bootstrap(data.decode("utf-8"), str(path))
        return followed(await fetch_newest_map(bootstrap, timeout=timeout), every)
    return load_network(path)


def read_network(path: str | Path, environ: Mapping[str, str]) -> Network:
    """:func:`open_network` for a command's entry point (no event loop running yet),
    refreshing every :func:`refresh_seconds` of ``environ``.

    Raises:
        NetworkFileError, MapError: as :func:`open_network`.
    """
    return asyncio.run(open_network(path, every=refresh_seconds(environ)))

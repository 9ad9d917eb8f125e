"""Leases of pushed records: ``--lease DURATION`` as a signed end, and when a push renews.

A push with a lease signs ``expires = now + DURATION`` (unix seconds, rounded
up) into every record it writes (:mod:`storage_network.wire.record`); without
one its records never expire.  A path whose record the network holds is
skipped, unless the push would leave it a later end (:func:`renews`): the
path is then pushed again (its shards are found held and only touched, its
NAR is read again), and the newer record of the same content replaces the
older one on the nodes.  A record whose lease ended counts as absent and is
pushed again like any missing path.
"""

from __future__ import annotations

import math
import re

from storage_network.wire.record import Record

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"\A(\d+(?:\.\d+)?)([smhdw]?)\Z")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or ``600``.

    Raises:
        ValueError: anything else.
    """
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 90m, 45s or 2w")
    return float(match[1]) * _UNITS[match[2] or "s"]


def lease_end(lease: float | None, now: float) -> int | None:
    """The signed end (unix seconds, rounded up) of a lease of ``lease`` seconds taken
    at ``now``; None without a lease (the record never expires).

    Raises:
        ValueError: ``lease`` is not a positive, finite number of seconds.
    """
    if lease is None:
        return None
    if not (math.isfinite(lease) and lease > 0):
        raise ValueError(f"a lease must be a positive number of seconds, not {lease}")
    return math.ceil(now + lease)


def renews(held: Record, expires: int | None) -> bool:
    """Whether a record ending at ``expires`` (None: never) leaves the path a later end
    than ``held``, the record the network holds: a held record without a lease is
    never renewed, one with a lease is by a push without one or with a later end."""
    if held.expires is None:
        return False
    return expires is None or expires > held.expires

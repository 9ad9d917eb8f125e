"""``POST /proofs``: storage challenges (filled in by the proofs-of-storage work)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register the proof routes on ``app``."""

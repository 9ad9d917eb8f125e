"""The exception tree of :mod:`uploader`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .push import PushSummary


class UploaderError(Exception):
    """Base class of every error :mod:`uploader` raises on purpose."""


class NixQueryError(UploaderError):
    """Asking the local Nix store about a path failed (not a store path, not valid, no nix)."""


class PushError(UploaderError):
    """A store path could not be pushed (NAR mismatch, network refused, ...)."""


class PushQuotaError(PushError):
    """A node refused a store path's shards or record: the publisher is over its quota
    there (:class:`storage_network.errors.QuotaExceededError`); nothing of the path
    was committed.

    Attributes:
        quota: the node's one-line refusal (publisher, usage, quota, bytes needed).
    """

    def __init__(self, message: str, quota: str) -> None:
        super().__init__(message)
        self.quota = quota


class PushFailedError(PushError):
    """Some paths of a closure were not pushed; the others were (records in dependency order).

    Attributes:
        failures: store path -> why it was not pushed: its own error, or
            ``not committed: reference ... was not pushed`` for a path whose
            reference failed (its record was then not written).
        summary: what the push did do (a :class:`uploader.push.PushSummary`).
    """

    def __init__(self, failures: dict[str, str], summary: PushSummary) -> None:
        self.failures = dict(failures)
        self.summary = summary
        lines = [f"  {path}: {why}" for path, why in sorted(self.failures.items())]
        super().__init__(f"{len(self.failures)} store path(s) not pushed:\n" + "\n".join(lines))


class StoreWatchError(UploaderError):
    """The store directory to watch cannot be read (missing, not a directory, no permission)."""

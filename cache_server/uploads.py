"""What every upload (narinfo, realisation) must carry: a signature by a trusted upload key."""

from __future__ import annotations

from .config import UploadConfig
from .errors import ForbiddenError

__all__ = ["gateway_signs"]


def gateway_signs(uploads: UploadConfig, trusted: bool, what: str, hint: str) -> bool:
    """Whether the gateway must sign an upload itself: False when a trusted upload key
    signed it (``trusted``), True when none did and ``sign_uploads`` is on.

    ``what`` names the upload and ``hint`` says how to sign it, for the refusal.

    Raises:
        ForbiddenError: no trusted signature and ``sign_uploads`` is off.
    """
    if trusted:
        return False
    if not uploads.sign_uploads:
        names = ", ".join(k.name for k in uploads.trusted_keys) or "none configured"
        raise ForbiddenError(f"{what} carries no signature by a trusted upload key "
                             f"(trusted: {names}); {hint} or enable sign_uploads on the gateway")
    return True

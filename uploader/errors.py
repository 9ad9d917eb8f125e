"""The exception tree of :mod:`uploader`."""


class UploaderError(Exception):
    """Base class of every error :mod:`uploader` raises on purpose."""


class NixQueryError(UploaderError):
    """Asking the local Nix store about a path failed (not a store path, not valid, no nix)."""


class PushError(UploaderError):
    """A store path could not be pushed (NAR mismatch, network refused, ...)."""


class SigningKeyError(UploaderError):
    """The signing key is missing, unreadable or not a Nix secret key."""

"""The one exception tree of :mod:`nix_formats`.

Every error raised by this package is a :class:`NixFormatError`; callers that
only want "the input was malformed" catch that.  Subclasses name the format
that was wrong, and every message says exactly what was wrong (and, for NARs,
at which byte offset).
"""

from __future__ import annotations

__all__ = [
    "CompressedDataError",
    "CompressionError",
    "DecompressedTooLargeError",
    "HashError",
    "NarError",
    "NarInfoError",
    "NarListingTooLargeError",
    "NarListingError",
    "Nix32Error",
    "NixFormatError",
    "NixKeyError",
    "SignatureError",
    "StorePathError",
    "UnsupportedCompressionError",
]


class NixFormatError(Exception):
    """Base class: some Nix-format input was malformed or unsupported."""


class Nix32Error(NixFormatError):
    """A string is not valid Nix base-32 (bad character, length or excess bits).

    Format defined in Nix ``src/libutil/hash.cc`` (``printHash32``/``parseHash32``).
    """


class HashError(NixFormatError):
    """A Nix hash string (``sha256:...``, SRI, base16) could not be parsed.

    Format defined in Nix ``src/libutil/hash.cc`` (``Hash::parseAnyPrefixed``).
    """


class StorePathError(NixFormatError):
    """A store path, store-path basename, or store-path hash part is invalid.

    Rules defined in Nix ``src/libstore/path.cc``.
    """


class NarError(NixFormatError):
    """A NAR stream is malformed, or a file tree cannot be serialised as a NAR.

    ``offset`` is the byte offset in the NAR stream where the problem was
    found (``None`` when the error is about a file on disk, not a stream).
    Format defined in Nix ``src/libutil/archive.cc``.
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        if offset is not None:
            message = f"invalid NAR at byte offset {offset}: {message}"
        super().__init__(message)
        self.offset = offset


class NarListingTooLargeError(NarError):
    """A NAR has more nodes than the listing being made of it may hold (``limit``).

    The NAR itself may be valid: the caller chose not to hold a listing that large.
    """

    def __init__(self, limit: int, offset: int) -> None:
        super().__init__(f"the NAR has more than {limit} nodes, the most a listing is made "
                         "of", offset)
        self.limit = limit


class NarInfoError(NixFormatError):
    """A ``.narinfo`` text is malformed (or a NarInfo cannot be rendered).

    Format defined in Nix ``src/libstore/nar-info.cc``.
    """


class NixKeyError(NixFormatError):
    """A Nix ed25519 key (``name:base64``) is malformed or inconsistent.

    Format defined in Nix ``src/libutil/crypto.cc``.
    """


class SignatureError(NixFormatError):
    """A ``Sig:`` value (``name:base64(64-byte signature)``) is malformed.

    Format defined in Nix ``src/libutil/crypto.cc``.
    """


class NarListingError(NixFormatError):
    """A NAR listing (the JSON of a ``<hash>.ls`` file) is malformed.

    Format defined in Nix ``src/libstore/nar-accessor.cc`` (``listNar``) and
    ``src/libstore/binary-cache-store.cc`` (the ``{"version":1,"root":...}``
    wrapper).
    """


class CompressionError(NixFormatError):
    """Base class of the errors of :mod:`nix_formats.compression`."""


class UnsupportedCompressionError(CompressionError):
    """A narinfo ``Compression:`` method this package cannot decompress.

    ``method`` is the method as written.  Methods Nix knows are listed in Nix
    ``src/libutil/compression.cc`` (``makeDecompressionSink``).
    """

    def __init__(self, method: str, reason: str | None = None) -> None:
        message = f"unsupported compression method {method!r}"
        if reason:
            message = f"{message}: {reason}"
        super().__init__(message)
        self.method = method


class CompressedDataError(CompressionError):
    """Compressed data is corrupt or truncated; the message names the method and why.

    ``method`` is the compression method; ``offset`` the number of compressed
    bytes read when the problem was found (the whole input when truncated).
    """

    def __init__(self, method: str, message: str, offset: int) -> None:
        super().__init__(message)
        self.method = method
        self.offset = offset


class DecompressedTooLargeError(CompressedDataError):
    """Decompressed output passed the cap the caller gave (a narinfo's ``NarSize``).

    ``limit`` is that cap in bytes; ``offset`` the number of compressed bytes
    read when the output passed it.  A "decompression bomb" raises this after
    at most ``limit + 1`` bytes were decoded.
    """

    def __init__(self, method: str, limit: int, offset: int) -> None:
        super().__init__(
            method,
            f"{method or 'uncompressed'} data decompresses to more than {limit} bytes "
            f"(passed after {offset} compressed bytes)",
            offset,
        )
        self.limit = limit

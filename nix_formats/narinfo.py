"""``.narinfo`` files: the metadata of one store path in a binary cache.

Format defined in Nix ``src/libstore/nar-info.cc`` (``NarInfo::NarInfo``,
``NarInfo::to_string``); the signed fingerprint in
``src/libstore/path-info.cc`` (``ValidPathInfo::fingerprint``).

The text is ``Key: value`` lines, each ending in ``\\n``.  Nix writes them in
this order::

    StorePath: /nix/store/<hash>-<name>
    URL: nar/<filehash>.nar.xz
    Compression: xz
    FileHash: sha256:<nix32>
    FileSize: <bytes>
    NarHash: sha256:<nix32>
    NarSize: <bytes>
    References: <basename> <basename> ...   (empty after "References: " when none)
    Deriver: <basename>.drv                 (optional)
    System: <system>                        (optional, old caches)
    Sig: <keyname>:<base64>                 (zero or more)
    CA: <content address>                   (optional)

Required: StorePath, URL, NarHash, NarSize.  A missing Compression means
``bzip2``.  Keys Nix does not know are ignored by Nix; :class:`NarInfo` keeps
them (in order) and renders them after the known ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import HashError, NarInfoError, SignatureError, StorePathError
from .hash import format_sha256_nix32, parse_nix_hash
from .store_path import STORE_DIR, StorePath, validate_store_dir

__all__ = ["UNKNOWN_DERIVER", "NarInfo", "check_sig_text"]

#: Deriver value old Nix versions wrote when the deriver was not known.
UNKNOWN_DERIVER = "unknown-deriver"

_KNOWN_KEYS = (
    "StorePath",
    "URL",
    "Compression",
    "FileHash",
    "FileSize",
    "NarHash",
    "NarSize",
    "References",
    "Deriver",
    "System",
    "Sig",
    "CA",
)
_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_UINT_RE = re.compile(r"[0-9]+")
_MAX_UINT64 = (1 << 64) - 1
_SIG_RE = re.compile(r"([^:]+):([A-Za-z0-9+/]{86}==)")


def check_sig_text(sig: str) -> str:
    """Check the shape of a ``Sig:`` value ``<keyname>:<base64 of 64 bytes>``; return it.

    Raises :class:`~nix_formats.errors.SignatureError` if the key name is
    empty or the signature is not 88 base64 characters.  Does not verify it
    (see :mod:`nix_formats.keys`).  Format: Nix ``src/libutil/crypto.cc``.
    """
    if not _SIG_RE.fullmatch(sig):
        if ":" not in sig:
            raise SignatureError(f"signature {sig!r} is not of the form <keyname>:<base64>")
        name, _, b64 = sig.partition(":")
        if not name:
            raise SignatureError(f"signature {sig!r} has an empty key name")
        raise SignatureError(
            f"signature {sig!r} of key {name!r} is not the base64 of a 64-byte ed25519 "
            f"signature (88 characters ending in '=='), got {len(b64)} characters"
        )
    return sig


def _uint(key: str, value: str, lineno: int) -> int:
    if not _UINT_RE.fullmatch(value):
        raise NarInfoError(f"line {lineno}: {key} {value!r} is not a non-negative integer")
    digits = value.lstrip("0") or "0"  # int() refuses more than 4300 digits, zeros included
    if len(digits) > 20 or int(digits) > _MAX_UINT64:
        raise NarInfoError(f"line {lineno}: {key} {value[:40]!r} does not fit in 64 bits")
    return int(digits)


def _check_ca(value: str) -> None:
    """Check a content address: ``text:<hash>`` or ``fixed:[r:]<hash>`` (content-address.cc)."""
    if value.startswith("text:"):
        rest = value[len("text:") :]
    elif value.startswith("fixed:r:"):
        rest = value[len("fixed:r:") :]
    elif value.startswith("fixed:"):
        rest = value[len("fixed:") :]
    else:
        raise NarInfoError(f"CA {value!r} does not start with 'text:' or 'fixed:'")
    try:
        parse_nix_hash(rest)
    except HashError as exc:
        raise NarInfoError(f"CA {value!r} has a bad hash: {exc}") from None


@dataclass(kw_only=True)
class NarInfo:
    """One parsed ``.narinfo``.

    Fields (sizes in bytes):

    - ``store_path``: the :class:`~nix_formats.store_path.StorePath` described;
    - ``url``: where the (compressed) NAR is, relative to the cache root;
    - ``compression``: ``xz``, ``zstd``, ``bzip2``, ``none``, ...;
    - ``file_hash`` / ``file_size``: hash text and size of the compressed file;
    - ``nar_hash``: the NAR's hash text as written (``sha256:<nix32>`` from
      Nix; base16 and SRI sha256 are accepted too); ``nar_size``: NAR bytes;
    - ``references``: basenames ``<hash>-<name>`` as written;
    - ``deriver``: basename of the ``.drv`` (or ``"unknown-deriver"``), or None;
    - ``system``: obsolete ``System:`` value or None;
    - ``sigs``: ``Sig:`` values ``<keyname>:<base64>``, in order;
    - ``ca``: content address text or None;
    - ``extra``: ``(key, value)`` lines Nix does not know, in order;
    - ``store_dir``: the store directory of ``store_path``.

    Format: Nix ``src/libstore/nar-info.cc``.
    """

    store_path: StorePath
    url: str
    compression: str
    nar_hash: str
    nar_size: int
    file_hash: str | None = None
    file_size: int | None = None
    references: list[str] = field(default_factory=list)
    deriver: str | None = None
    system: str | None = None
    sigs: list[str] = field(default_factory=list)
    ca: str | None = None
    extra: list[tuple[str, str]] = field(default_factory=list)
    store_dir: str = STORE_DIR

    @classmethod
    def parse(cls, text: str, store_dir: str = STORE_DIR) -> NarInfo:
        """Parse narinfo ``text`` (every line, the last included, ends in ``\\n``).

        Raises :class:`~nix_formats.errors.NarInfoError` (message names the
        line and what is wrong) for: a missing required field (StorePath, URL,
        NarHash, NarSize); an empty line, a ``\\r``, or a line without
        ``": "`` after a key; a missing final newline; a repeated key other
        than ``Sig``; a non-integer or 0 ``NarSize``, non-integer ``FileSize``;
        an unparsable ``NarHash`` (must be sha256) or ``FileHash``; an invalid
        StorePath (or one outside ``store_dir``), reference or deriver; a
        repeated reference; a malformed ``Sig`` or ``CA``.  Identical repeated
        ``Sig`` lines are kept once, as Nix does.
        """
        validate_store_dir(store_dir)
        if not text:
            raise NarInfoError("narinfo is empty")
        if not text.endswith("\n"):
            raise NarInfoError("narinfo does not end with a newline")
        if "\r" in text:
            raise NarInfoError("narinfo contains a carriage return ('\\r')")
        seen: dict[str, int] = {}
        values: dict[str, str] = {}
        sigs: list[str] = []
        extra: list[tuple[str, str]] = []
        for lineno, line in enumerate(text[:-1].split("\n"), start=1):
            if not line:
                raise NarInfoError(f"line {lineno}: empty line")
            key, sep, value = line.partition(": ")
            if not sep or not _KEY_RE.fullmatch(key):
                raise NarInfoError(f"line {lineno}: {line!r} is not of the form 'Key: value'")
            if key == "Sig":
                try:
                    check_sig_text(value)
                except SignatureError as exc:
                    raise NarInfoError(f"line {lineno}: bad Sig: {exc}") from None
                if value not in sigs:
                    sigs.append(value)
                continue
            if key in seen:
                raise NarInfoError(f"line {lineno}: duplicate {key} (first on line {seen[key]})")
            seen[key] = lineno
            if key in _KNOWN_KEYS:
                values[key] = value
            else:
                extra.append((key, value))

        for key in ("StorePath", "URL", "NarHash", "NarSize"):
            if key not in values:
                raise NarInfoError(f"narinfo has no {key} line")

        def where(key: str) -> str:
            return f"line {seen[key]}"

        try:
            store_path = StorePath.parse(values["StorePath"], store_dir)
        except StorePathError as exc:
            raise NarInfoError(f"{where('StorePath')}: bad StorePath: {exc}") from None
        url = values["URL"]
        if not url:
            raise NarInfoError(f"{where('URL')}: URL is empty")
        nar_hash = values["NarHash"]
        try:
            algo, _ = parse_nix_hash(nar_hash)
        except HashError as exc:
            raise NarInfoError(f"{where('NarHash')}: bad NarHash: {exc}") from None
        if algo != "sha256":
            raise NarInfoError(f"{where('NarHash')}: NarHash must be sha256, got {algo}")
        nar_size = _uint("NarSize", values["NarSize"], seen["NarSize"])
        if nar_size == 0:
            raise NarInfoError(f"{where('NarSize')}: NarSize is 0 (a NAR is never empty)")
        file_hash = values.get("FileHash")
        if file_hash is not None:
            try:
                parse_nix_hash(file_hash)
            except HashError as exc:
                raise NarInfoError(f"{where('FileHash')}: bad FileHash: {exc}") from None
        file_size = None
        if "FileSize" in values:
            file_size = _uint("FileSize", values["FileSize"], seen["FileSize"])
        references: list[str] = []
        if "References" in values:
            for ref in values["References"].split(" "):
                if not ref:
                    continue
                try:
                    StorePath.parse_basename(ref)
                except StorePathError as exc:
                    raise NarInfoError(f"{where('References')}: bad reference: {exc}") from None
                if ref in references:
                    raise NarInfoError(f"{where('References')}: duplicate reference {ref!r}")
                references.append(ref)
        deriver = values.get("Deriver")
        if deriver is not None and deriver != UNKNOWN_DERIVER:
            try:
                StorePath.parse_basename(deriver)
            except StorePathError as exc:
                raise NarInfoError(f"{where('Deriver')}: bad Deriver: {exc}") from None
        ca = values.get("CA") or None
        if ca is not None:
            try:
                _check_ca(ca)
            except NarInfoError as exc:
                raise NarInfoError(f"{where('CA')}: {exc}") from None
        return cls(
            store_path=store_path,
            url=url,
            compression=values.get("Compression") or "bzip2",
            file_hash=file_hash,
            file_size=file_size,
            nar_hash=nar_hash,
            nar_size=nar_size,
            references=references,
            deriver=deriver,
            system=values.get("System"),
            sigs=sigs,
            ca=ca,
            extra=extra,
            store_dir=store_dir,
        )

    def render(self) -> str:
        """The narinfo text, in Nix's field order, every line ending in ``\\n``.

        Byte-identical to the input for narinfo files written by Nix
        (``nix copy --to file://...``).  Optional fields that are None are
        left out; ``extra`` lines come last.  Raises
        :class:`~nix_formats.errors.NarInfoError` if a value contains a
        newline or carriage return (which would inject lines), a required
        text field is empty, a size is negative, or an extra key is invalid.
        """
        lines: list[tuple[str, str]] = [
            ("StorePath", self.store_path.in_store(self.store_dir)),
            ("URL", self.url),
            ("Compression", self.compression),
        ]
        if self.file_hash is not None:
            lines.append(("FileHash", self.file_hash))
        if self.file_size is not None:
            lines.append(("FileSize", str(self.file_size)))
        lines.append(("NarHash", self.nar_hash))
        lines.append(("NarSize", str(self.nar_size)))
        lines.append(("References", " ".join(self.references)))
        if self.deriver is not None:
            lines.append(("Deriver", self.deriver))
        if self.system is not None:
            lines.append(("System", self.system))
        lines.extend(("Sig", sig) for sig in self.sigs)
        if self.ca is not None:
            lines.append(("CA", self.ca))
        lines.extend(self.extra)

        for key in ("url", "compression", "nar_hash"):
            if not getattr(self, key):
                raise NarInfoError(f"cannot render narinfo: {key} is empty")
        for key, size in (("nar_size", self.nar_size), ("file_size", self.file_size)):
            if size is not None and size < 0:
                raise NarInfoError(f"cannot render narinfo: {key} is negative ({size})")
        out: list[str] = []
        for key, value in lines:
            if "\n" in value or "\r" in value:
                raise NarInfoError(f"cannot render narinfo: {key} value {value!r} has a line break")
            if not _KEY_RE.fullmatch(key):
                raise NarInfoError(f"cannot render narinfo: invalid key {key!r}")
            out.append(f"{key}: {value}\n")
        return "".join(out)

    def nar_hash_digest(self) -> bytes:
        """The 32-byte sha256 digest of the NAR, decoded from ``nar_hash``.

        Raises :class:`~nix_formats.errors.NarInfoError` if ``nar_hash`` is not
        a sha256 hash.
        """
        try:
            algo, digest = parse_nix_hash(self.nar_hash)
        except HashError as exc:
            raise NarInfoError(f"bad NarHash: {exc}") from None
        if algo != "sha256":
            raise NarInfoError(f"NarHash must be sha256, got {algo}")
        return digest

    def reference_paths(self) -> list[str]:
        """Full store paths of ``references``, in the order written.

        Raises :class:`~nix_formats.errors.NarInfoError` for an invalid reference.
        """
        paths = []
        for ref in self.references:
            try:
                paths.append(StorePath.parse_basename(ref).in_store(self.store_dir))
            except StorePathError as exc:
                raise NarInfoError(f"bad reference: {exc}") from None
        return paths

    def fingerprint(self) -> str:
        """The string a ``Sig:`` signs.

        ``1;<store path>;sha256:<nix32 NarHash>;<NarSize>;<sorted full reference
        paths joined by ','>`` -- the NarHash is converted to nix32 whatever
        form it was written in.  Raises :class:`~nix_formats.errors.NarInfoError`
        if ``nar_hash`` is not sha256 or ``nar_size`` is 0 (Nix refuses too).
        Format: Nix ``src/libstore/path-info.cc`` (``fingerprint``).
        """
        if self.nar_size <= 0:
            raise NarInfoError(
                f"cannot compute the fingerprint of {self.store_path.basename}: NarSize is "
                f"{self.nar_size}"
            )
        return ";".join(
            (
                "1",
                self.store_path.in_store(self.store_dir),
                format_sha256_nix32(self.nar_hash_digest()),
                str(self.nar_size),
                ",".join(sorted(self.reference_paths())),
            )
        )

"""Realisations: which store path a content-addressed derivation's output built to.

Format defined in Nix ``src/libstore/realisation.cc`` / ``realisation.hh``
(``DrvOutput``, ``Realisation::toJSON``, ``fromJSON``, ``fingerprint``) and
kept by a binary cache at ``realisations/<id>.doi``
(``src/libstore/binary-cache-store.cc``, ``registerDrvOutput``,
``queryRealisationUncached``).  Checked against Nix 2.8.0.

- A *derivation output id* is ``sha256:<hash modulo of the .drv>!<output
  name>``.  Nix writes the hash in base16 (``DrvOutput::strHash``); it reads
  any form ``Hash::parseAnyPrefixed`` knows.  :meth:`DrvOutput.parse`
  accepts sha256 only, in lower-case base16 (64 characters) or nix32 (52),
  and an output name that can end a store-path name
  (``[A-Za-z0-9+-._?=]``, 1..211 characters: Nix makes the output path
  ``<drv name>-<output>`` from it, ``src/libstore/path.cc``).
- The JSON body, as Nix 2.8 writes it (nlohmann ``dump()``: keys sorted,
  no spaces)::

      {"dependentRealisations":{"sha256:<hex>!out":"<basename>"},
       "id":"sha256:<hex>!out","outPath":"<basename>",
       "signatures":["<key name>:<base64>"]}

  ``id`` and ``outPath`` are required; ``signatures`` and
  ``dependentRealisations`` may be missing (empty).  Other keys are ignored,
  as Nix ignores them.
- The signed *fingerprint* (:meth:`Realisation.fingerprint`) is that JSON
  without ``signatures``: ``{"dependentRealisations":{...},"id":...,"outPath":...}``
  (``Realisation::fingerprint`` erases only ``signatures``; verified against
  signatures Nix 2.8 made with ``secret-key-files``).  Signatures are ed25519
  over it, ``<key name>:<base64 of 64 bytes>`` as for narinfos
  (:mod:`nix_formats.keys`).

Every error raised is a :class:`RealisationError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import nix32
from .errors import Nix32Error, NixFormatError, SignatureError, StorePathError
from .keys import PublicKey, SecretKey
from .narinfo import check_sig_text
from .store_path import MAX_NAME_LEN, StorePath

__all__ = ["MAX_REALISATION_BYTES", "DrvOutput", "Realisation", "RealisationError"]

#: The largest realisation JSON :meth:`Realisation.parse` reads, in bytes.
MAX_REALISATION_BYTES = 1024 * 1024

_HEX_RE = re.compile(r"[0-9a-f]{64}")
_NIX32_LEN = nix32.encoded_length(32)
_OUTPUT_RE = re.compile(r"[A-Za-z0-9+\-._?=]+")
_MAX_FIELD = 512  # longer than any id, basename or signature: refused without quoting it


class RealisationError(NixFormatError):
    """A derivation output id or a realisation's JSON is malformed.

    Format defined in Nix ``src/libstore/realisation.cc``.
    """


@dataclass(frozen=True, order=True)
class DrvOutput:
    """One output of a derivation, named by the derivation's hash modulo (Nix ``DrvOutput``).

    Attributes:
        digest: the 32-byte SHA-256 hash modulo of the ``.drv``.
        output: the output name (``out``, ``dev``, ...).

    Ordering is Nix's (``GENERATE_CMP(DrvOutput, drvHash, outputName)``),
    which is also the order of :meth:`text`.  Constructing one with a digest
    that is not 32 bytes or a bad output name raises :class:`RealisationError`.
    """

    digest: bytes
    output: str

    def __post_init__(self) -> None:
        if len(self.digest) != 32:
            raise RealisationError(f"a derivation hash is 32 bytes, got {len(self.digest)}")
        _check_output(self.output, self.output)

    @classmethod
    def parse(cls, text: str) -> DrvOutput:
        """Parse ``sha256:<64 lower-case hex or 52 nix32>!<output name>``.

        Raises:
            RealisationError: no ``!``, another algorithm or encoding, a bad
                digest (length, character, nix32 excess bits) or a bad
                output name; the message quotes at most 200 characters.
        """
        shown = text[:200]
        hash_text, sep, output = text.partition("!")
        if not sep:
            raise RealisationError(f"derivation output id {shown!r} has no '!' "
                                   "(want sha256:<hash>!<output name>)")
        algo, colon, digest_text = hash_text.partition(":")
        if not colon or algo != "sha256":
            raise RealisationError(f"derivation output id {shown!r} does not start with "
                                   "'sha256:'")
        if _HEX_RE.fullmatch(digest_text):
            digest = bytes.fromhex(digest_text)
        elif len(digest_text) == _NIX32_LEN:
            try:
                digest = nix32.decode(digest_text)
            except Nix32Error as exc:
                raise RealisationError(f"derivation output id {shown!r}: {exc}") from None
        else:
            raise RealisationError(
                f"derivation output id {shown!r}: the hash is neither 64 lower-case hex "
                f"nor {_NIX32_LEN} nix32 characters")
        _check_output(output, shown)
        return cls(digest, output)

    def text(self) -> str:
        """``sha256:<64 hex>!<output>``: Nix's ``DrvOutput::to_string`` (the ``.doi`` name)."""
        return f"sha256:{self.digest.hex()}!{self.output}"

    def __str__(self) -> str:
        return self.text()


def _check_output(output: str, shown: str) -> None:
    if not output:
        raise RealisationError(f"derivation output id {shown!r} has an empty output name")
    if len(output) > MAX_NAME_LEN:
        raise RealisationError(f"derivation output id {shown!r}: output name longer than "
                               f"{MAX_NAME_LEN} characters")
    if not _OUTPUT_RE.fullmatch(output):
        raise RealisationError(f"derivation output id {shown!r}: output name has a character "
                               "outside [A-Za-z0-9+-._?=]")


@dataclass(frozen=True)
class Realisation:
    """A realisation (Nix ``Realisation``): ``id`` built to ``out_path``.

    Attributes:
        id: the derivation output.
        out_path: the store path it built to (kept without store directory).
        signatures: ``<key name>:<base64 of 64 bytes>`` values, sorted and
            without duplicates (Nix keeps a ``StringSet``).
        dependent: the realisations this one needs (other outputs its
            output refers to), as ``(DrvOutput, StorePath)`` pairs sorted by
            id, each id once (Nix keeps a ``std::map``).

    Construct with :meth:`parse` or :meth:`new`; the constructor itself
    checks nothing.
    """

    id: DrvOutput
    out_path: StorePath
    signatures: tuple[str, ...] = ()
    dependent: tuple[tuple[DrvOutput, StorePath], ...] = field(default=())

    @classmethod
    def new(cls, id: DrvOutput, out_path: StorePath, signatures: Iterable[str] = (),
            dependent: Mapping[DrvOutput, StorePath] | None = None) -> Realisation:
        """A realisation with signatures sorted and deduplicated and ``dependent`` sorted.

        Raises:
            SignatureError: a signature is not ``<key name>:<base64 of 64 bytes>``.
        """
        sigs = tuple(sorted({check_sig_text(s) for s in signatures}))
        deps = tuple(sorted((dependent or {}).items()))
        return cls(id, out_path, sigs, deps)

    @classmethod
    def parse(cls, data: bytes | str) -> Realisation:
        """Parse a realisation's JSON (the body of a ``.doi`` file), strictly.

        Args:
            data: at most :data:`MAX_REALISATION_BYTES` bytes of UTF-8 JSON.

        Raises:
            RealisationError: too large, not UTF-8, not JSON, not an object,
                a key given twice, ``id`` or ``outPath`` missing or not
                strings, ``signatures`` not a list of strings,
                ``dependentRealisations`` not an object of string to string,
                an id (:meth:`DrvOutput.parse`) or store-path basename that
                is invalid, a dependent id given twice, or a malformed
                signature.
        """
        # the cap is on UTF-8 bytes: a str is measured encoded (a character may take 4)
        size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        if size > MAX_REALISATION_BYTES:
            raise RealisationError(f"realisation of {size} bytes is larger than "
                                   f"{MAX_REALISATION_BYTES}")
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            obj = json.loads(text, object_pairs_hook=_unique_keys,
                             parse_constant=_no_constant)
        except UnicodeDecodeError as exc:
            raise RealisationError(f"realisation is not UTF-8: {exc}") from None
        except (ValueError, RecursionError) as exc:
            raise RealisationError(f"realisation is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise RealisationError(f"realisation JSON is a {type(obj).__name__}, not an object")
        id_text, out_text = obj.get("id"), obj.get("outPath")
        if not isinstance(id_text, str):
            raise RealisationError("realisation has no string field 'id'")
        if not isinstance(out_text, str):
            raise RealisationError("realisation has no string field 'outPath'")
        sigs = obj.get("signatures", [])
        if not isinstance(sigs, list) or not all(isinstance(s, str) for s in sigs):
            raise RealisationError("realisation field 'signatures' is not a list of strings")
        deps_obj = obj.get("dependentRealisations", {})
        if not isinstance(deps_obj, dict) or \
                not all(isinstance(v, str) for v in deps_obj.values()):
            raise RealisationError("realisation field 'dependentRealisations' is not an "
                                   "object of strings")
        if any(len(s) > _MAX_FIELD for s in sigs):
            raise RealisationError(f"realisation has a signature longer than {_MAX_FIELD} "
                                   "characters")
        drv_output = DrvOutput.parse(id_text)
        deps: dict[DrvOutput, StorePath] = {}
        for dep_text, dep_path in deps_obj.items():
            dep = DrvOutput.parse(dep_text)
            if dep in deps:
                raise RealisationError(f"realisation {drv_output}: dependent realisation "
                                       f"{dep} given twice")
            deps[dep] = _basename(dep_path, f"dependent realisation {dep}")
        try:
            return cls.new(drv_output, _basename(out_text, "outPath"), sigs, deps)
        except SignatureError as exc:
            raise RealisationError(f"realisation {drv_output}: {exc}") from None

    def _json(self, signatures: bool) -> str:
        obj: dict[str, Any] = {
            "dependentRealisations": {dep.text(): path.basename for dep, path in self.dependent},
            "id": self.id.text(),
            "outPath": self.out_path.basename,
        }
        if signatures:
            obj["signatures"] = list(self.signatures)
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def render(self) -> str:
        """The JSON as Nix 2.8 writes it (``Realisation::toJSON().dump()``): keys sorted,
        no whitespace, ids in base16, paths as basenames."""
        return self._json(signatures=True)

    def fingerprint(self) -> str:
        """What a signature signs: :meth:`render` without ``signatures``
        (Nix ``Realisation::fingerprint``)."""
        return self._json(signatures=False)

    def same_build(self, other: Realisation) -> bool:
        """Whether ``other`` says the same as this one, signatures aside.

        Same id and output path, and the same dependent realisations or one
        side without any (Nix ``Realisation::isCompatibleWith``: an empty set
        is what older Nix wrote).
        """
        return self.id == other.id and self.out_path == other.out_path and (
            self.dependent == other.dependent or not self.dependent or not other.dependent)

    def signed_by(self, trusted: Iterable[PublicKey]) -> list[str]:
        """Names of the ``trusted`` keys with a valid signature on this realisation.

        Signatures by other key names, or that do not verify, are ignored
        (as Nix's ``checkSignatures`` counts only good ones).
        """
        fingerprint = self.fingerprint()
        names = []
        for key in trusted:
            for sig in self.signatures:
                try:
                    if key.verify(fingerprint, sig):
                        names.append(key.name)
                        break
                except SignatureError:
                    continue
        return names

    def sign(self, key: SecretKey) -> Realisation:
        """A copy with ``key``'s signature of :meth:`fingerprint` added (Nix
        ``Realisation::sign``); ed25519 is deterministic, so signing twice adds nothing."""
        return Realisation.new(self.id, self.out_path, (*self.signatures,
                                                        key.sign(self.fingerprint())),
                               dict(self.dependent))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise RealisationError(f"realisation JSON gives key {key[:100]!r} twice")
        obj[key] = value
    return obj


def _no_constant(name: str) -> None:
    raise RealisationError(f"realisation JSON holds {name}, which is not JSON")


def _basename(text: str, what: str) -> StorePath:
    if len(text) > _MAX_FIELD:
        raise RealisationError(f"realisation {what} is {len(text)} characters long, not a "
                               "store path basename")
    try:
        return StorePath.parse_basename(text)
    except StorePathError as exc:
        raise RealisationError(f"realisation {what}: {exc}") from None

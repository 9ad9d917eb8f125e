"""Signed maps: the file format, signing, and t-of-n verification along a chain of epochs.

A signed map file is JSON (at most :data:`~.document.MAX_MAP_BYTES` bytes)::

    {"document": { ...the map document... },
     "signatures": [{"key": "maint-1", "signature": "<base64 of 64 bytes>"}, ...]}

Each signature is ed25519 by the named maintainer key over
:func:`signed_message`: ``b"nixshard-network-map/1\\n"`` followed by the 32-byte
SHA-256 of the document's canonical bytes (:mod:`.document`); the prefix keeps
a map signature from ever being valid for another of our signed objects.

**Validity** (the rule of TUF's root rotation): a map of epoch N is valid when
at least ``threshold`` distinct maintainers OF EPOCH N - 1 signed it and its
``previous`` is the SHA-256 of epoch N - 1's canonical bytes.  Epoch 1 is
checked against a bootstrap file's maintainer keys and threshold
(:class:`TrustRoot` of epoch 0).  So a new epoch can replace the maintainers:
the old ones sign it, the new ones sign the one after.  A newer map is trusted
from an older one only by walking every epoch between (:func:`verify_chain`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from nacl.exceptions import BadSignatureError

from storage_network.capped_file import read_capped
from storage_network.config import Network
from storage_network.errors import MapError
from storage_network.wire.write_auth import Publisher, PublisherKey

from .document import MAX_MAP_BYTES, MAX_SIGNATURES, MapDocument, parse_document

SIGNATURE_DOMAIN = b"nixshard-network-map/1\n"
_SIG_KEYS = frozenset({"key", "signature"})
MAX_REASON_CHARS = 1000
"""Longest list of ignored signatures a refusal quotes."""


def signed_message(canonical: bytes) -> bytes:
    """The bytes a maintainer signs for a document with these canonical bytes."""
    return SIGNATURE_DOMAIN + hashlib.sha256(canonical).digest()


@dataclass(frozen=True)
class MapSignature:
    """One maintainer's signature: the key's name and 64 signature bytes."""

    key_name: str
    signature: bytes


@dataclass(frozen=True)
class TrustRoot:
    """Who may sign the next epoch: the maintainers of ``epoch`` and their threshold.

    Attributes:
        epoch: the epoch these maintainers belong to (0 for a bootstrap file: they
            sign epoch 1).
        maintainers: the maintainer keys, in order.
        threshold: distinct valid signatures the next epoch needs.
        digest: hex SHA-256 of epoch ``epoch``'s canonical bytes ("" for epoch 0).
        source: words for messages ("epoch 2", "bootstrap file b.toml").
    """

    epoch: int
    maintainers: tuple[PublisherKey, ...]
    threshold: int
    digest: str
    source: str


@dataclass(frozen=True)
class SignedMap:
    """A map document and the maintainer signatures it carries (not yet checked:
    see :func:`verify_next`)."""

    document: MapDocument
    signatures: tuple[MapSignature, ...] = ()

    @property
    def epoch(self) -> int:
        """The document's epoch."""
        return self.document.epoch

    @property
    def network(self) -> Network:
        """The :class:`~storage_network.config.Network` the map describes."""
        return self.document.to_network()

    def digest(self) -> str:
        """Hex SHA-256 of the document's canonical bytes (signatures not included)."""
        return self.document.digest()

    def trust_root(self) -> TrustRoot:
        """The maintainers of this epoch, who sign the next one."""
        d = self.document
        return TrustRoot(d.epoch, d.maintainers, d.threshold, self.digest(), f"epoch {d.epoch}")

    def signed_by(self, publisher: Publisher) -> SignedMap:
        """A copy carrying ``publisher``'s signature too; a signature already there
        under the same key name is replaced (signing twice is one signature)."""
        sig = publisher.sign(signed_message(self.document.canonical()))
        kept = tuple(s for s in self.signatures if s.key_name != publisher.name)
        return replace(self, signatures=(*kept, MapSignature(publisher.name, sig)))

    def to_bytes(self) -> bytes:
        """The signed map file (indented JSON, keys sorted, a final newline)."""
        doc = {"document": self.document.to_json(),
               "signatures": [{"key": s.key_name,
                               "signature": base64.b64encode(s.signature).decode()}
                              for s in self.signatures]}
        return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


def parse_signed_map(data: bytes | bytearray, limit: int = MAX_MAP_BYTES) -> SignedMap:
    """Parse a signed map file (signatures are not checked here).

    Raises:
        MapError: over ``limit`` bytes, not UTF-8 JSON, nested too deeply, a
            malformed document or signature entry, more than
            :data:`~.document.MAX_SIGNATURES` signatures, or one key name twice.
    """
    if len(data) > limit:
        raise MapError(f"signed map of {len(data)} bytes exceeds the limit of {limit} bytes")
    try:
        doc = json.loads(bytes(data).decode("utf-8"))
    except RecursionError:
        raise MapError("signed map is not JSON: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MapError(f"signed map is not UTF-8 JSON: {str(exc)[:120]}") from None
    if not isinstance(doc, dict) or set(doc) != {"document", "signatures"}:
        raise MapError("signed map must be a JSON object with exactly the keys "
                       "`document` and `signatures`")
    entries = doc["signatures"]
    if not isinstance(entries, list) or len(entries) > MAX_SIGNATURES:
        raise MapError(f"`signatures` must be a list of at most {MAX_SIGNATURES} entries")
    signatures = tuple(_parse_signature(entry, i) for i, entry in enumerate(entries))
    names = [s.key_name for s in signatures]
    if len(set(names)) != len(names):
        raise MapError("a key name appears twice among the signatures")
    return SignedMap(parse_document(doc["document"]), signatures)


def _parse_signature(entry: object, index: int) -> MapSignature:
    if not isinstance(entry, dict) or set(entry) != _SIG_KEYS:
        raise MapError(f"signatures[{index}] must be an object with `key` and `signature`")
    name, text = entry["key"], entry["signature"]
    if not isinstance(name, str) or not name or len(name) > 256:
        raise MapError(f"signatures[{index}]: `key` must be a key name of 1-256 characters")
    if not isinstance(text, str) or len(text) > 128:
        raise MapError(f"signatures[{index}]: `signature` must be base64 of 64 bytes")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MapError(f"signatures[{index}]: `signature` is not base64") from None
    if len(raw) != 64:
        raise MapError(f"signatures[{index}]: signature is {len(raw)} bytes, expected 64")
    return MapSignature(name, raw)


def valid_signers(root: TrustRoot, signed: SignedMap) -> tuple[list[str], list[str]]:
    """Which of ``signed``'s signatures verify against ``root``'s maintainers.

    Returns:
        ``(valid, ignored)``: names of maintainers with a valid signature, and one
        line per ignored signature saying why (not a maintainer, bad signature).
    """
    keys: Mapping[str, PublisherKey] = {k.name: k for k in root.maintainers}
    message = signed_message(signed.document.canonical())
    valid: list[str] = []
    ignored: list[str] = []
    for sig in signed.signatures:
        key = keys.get(sig.key_name)
        if key is None:
            ignored.append(f"{sig.key_name[:60]!r} is not a maintainer of {root.source}")
            continue
        try:
            key.verify_key.verify(message, sig.signature)
        except (BadSignatureError, ValueError):
            ignored.append(f"the signature by {sig.key_name!r} does not verify")
            continue
        valid.append(sig.key_name)
    return valid, ignored


def verify_next(root: TrustRoot, signed: SignedMap) -> None:
    """Check that ``signed`` is the valid successor of ``root``'s epoch.

    Raises:
        MapError: the epoch does not follow ``root.epoch``, ``previous`` is not
            ``root.digest``, or fewer than ``root.threshold`` distinct maintainers
            of ``root`` signed it; e.g. "epoch 3 has 1 valid signature of
            maintainers of epoch 2, needs 2 (...)".
    """
    epoch = signed.epoch
    if epoch != root.epoch + 1:
        raise MapError(f"epoch {epoch} does not follow {root.source} "
                       f"(the next epoch is {root.epoch + 1})")
    if signed.document.previous != root.digest:
        raise MapError(f"epoch {epoch} names previous document "
                       f"{signed.document.previous[:16] or '(none)'}..., but {root.source} "
                       f"is {root.digest[:16] or '(none)'}...")
    valid, ignored = valid_signers(root, signed)
    if len(valid) < root.threshold:
        plural = "" if len(valid) == 1 else "s"
        why = f" ({'; '.join(ignored)[:MAX_REASON_CHARS]})" if ignored else ""
        raise MapError(f"epoch {epoch} has {len(valid)} valid signature{plural} of "
                       f"maintainers of {root.source}, needs {root.threshold}{why}")


def verify_chain(root: TrustRoot, maps: Iterable[SignedMap]) -> list[SignedMap]:
    """Check ``maps``, in epoch order, each against the one before (the first against
    ``root``); return them as a list.

    Raises:
        MapError: the first map that is not the valid successor (see :func:`verify_next`).
    """
    chain: list[SignedMap] = []
    for signed in maps:
        verify_next(root, signed)
        chain.append(signed)
        root = signed.trust_root()
    return chain


def describe_signatures(root: TrustRoot | None, signed: SignedMap) -> str:
    """One line for people: who signed ``signed`` and whether that is enough
    against ``root`` (None: not checked)."""
    names = ", ".join(s.key_name for s in signed.signatures) or "nobody"
    if root is None:
        return f"signed by {names} (not checked: no previous epoch or bootstrap given)"
    try:
        verify_next(root, signed)
    except MapError as exc:
        return f"signed by {names}: NOT VALID: {exc}"
    valid, _ = valid_signers(root, signed)
    return (f"signed by {names}: valid ({len(valid)} of the {len(root.maintainers)} "
            f"maintainers of {root.source}, threshold {root.threshold})")



def load_signed_map(path: str | Path, limit: int = MAX_MAP_BYTES) -> SignedMap:
    """Read and parse the signed map file (or unsigned draft) at ``path``, at most
    ``limit`` bytes.

    Raises:
        MapError: unreadable, too large or malformed (the message names the file).
    """
    try:
        data = read_capped(path, limit)
    except OSError as exc:
        raise MapError(f"cannot read map file {path}: {exc.strerror}") from None
    try:
        return parse_signed_map(data, limit)
    except MapError as exc:
        raise MapError(f"map file {path}: {exc}") from None

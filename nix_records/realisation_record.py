"""Realisation records: the key and metadata of the record holding a realisation.

Nix (``src/libstore/binary-cache-store.cc``, ``registerDrvOutput`` /
``queryRealisationUncached``) keeps the realisation of a content-addressed
derivation output at ``realisations/<id>.doi``, its JSON
(:mod:`nix_formats.realisation`).  In the network it is a signed record
with an empty payload (no chunks: the JSON is small and lives in the
signed metadata):

- key: :func:`realisation_record_key`, derived from the id with a prefix
  of its own, so never the hash part of a store path nor a build log's key;
- metadata: :data:`REALISATION_MAGIC` followed by the realisation's JSON
  as Nix writes it (:meth:`~nix_formats.realisation.Realisation.render`).

A reader checks the magic, the JSON, that it names the id it was looked
up by and that the payload is empty (:func:`realisation_from_record`); a
narinfo lookup that meets such a record treats the path as absent
(:func:`is_realisation`).
"""

from __future__ import annotations

from nix_formats.errors import NixFormatError
from nix_formats.realisation import DrvOutput, Realisation
from storage_network import Record

from .errors import RecordContentError
from .narinfo_record import derived_record_key, record_key
from .publishing import RecordContent

__all__ = [
    "REALISATION_MAGIC",
    "is_realisation",
    "realisation_from_record",
    "realisation_links",
    "realisation_record",
    "realisation_record_key",
]

#: The first bytes of a realisation record's metadata (a narinfo or a build log never
#: starts so).
REALISATION_MAGIC = b"nixshard-realisation-v1\n"


def realisation_record_key(drv_output: DrvOutput) -> str:
    """The record key of the realisation of ``drv_output``.

    Args:
        drv_output: the derivation output; its base16 form
            (:meth:`~nix_formats.realisation.DrvOutput.text`) is hashed, so
            an id written in nix32 names the same record.

    Returns:
        32 nix32 characters: the first 160 bits of SHA-256 over a
        realisation-only prefix and the id, so never the hash part of a
        store path or a build log's key by design.
    """
    return derived_record_key(b"nixshard realisation", drv_output.text())


def realisation_links(realisation: Realisation) -> tuple[str, ...]:
    """The record keys the record of ``realisation`` needs while it stays, sorted: its
    output path's, and for each dependent realisation its record and its output
    path's (Nix substitutes those realisations with it)."""
    keys = {record_key(realisation.out_path.hash_part)}
    for drv_output, out_path in realisation.dependent:
        keys.add(realisation_record_key(drv_output))
        keys.add(record_key(out_path.hash_part))
    keys.discard(realisation_record_key(realisation.id))
    return tuple(sorted(keys))


def realisation_record(realisation: Realisation) -> RecordContent:
    """The key, metadata and links of the record of ``realisation``:
    :func:`realisation_record_key` of its id, :data:`REALISATION_MAGIC` + its JSON
    (UTF-8), and :func:`realisation_links`."""
    return RecordContent(realisation_record_key(realisation.id),
                         REALISATION_MAGIC + realisation.render().encode(),
                         links=realisation_links(realisation))


def is_realisation(metadata: bytes) -> bool:
    """True when record ``metadata`` is a realisation's rather than a narinfo."""
    return metadata.startswith(REALISATION_MAGIC)


def realisation_from_record(drv_output: DrvOutput, record: Record) -> Realisation | None:
    """The realisation a record found under ``realisation_record_key(drv_output)`` holds.

    Args:
        drv_output: the id the record was looked up by.
        record: a record opened and signature-checked by the network client.

    Returns:
        The realisation, or None when the record is not a realisation's
        (another kind of record: the realisation is absent).

    Raises:
        RecordContentError: it is a realisation record but its JSON does not
            parse, names another id, or the record has a payload.
    """
    if not is_realisation(record.metadata):
        return None
    where = f"realisation record {realisation_record_key(drv_output)} ({drv_output})"
    try:
        realisation = Realisation.parse(record.metadata[len(REALISATION_MAGIC):])
    except NixFormatError as exc:
        raise RecordContentError(f"{where} holds malformed JSON: {exc}") from exc
    if realisation.id != drv_output:
        raise RecordContentError(f"{where} holds the realisation of {realisation.id}")
    if record.manifest.chunks:
        raise RecordContentError(f"{where} has a payload of {record.manifest.size} bytes, "
                                 "none expected")
    return realisation

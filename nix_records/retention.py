"""What garbage collection must know of a record to keep closures whole.

``nixshard gc`` never deletes a store path that a path it keeps references:
it keeps every record that is not due (by ``--max-age``/``--max-idle``) and
every pin, closed over References (docs/gc.md).  The network does not know
what a record's metadata means; :func:`record_links` tells it, as the link
reader :func:`storage_network.upkeep.gc.collect_garbage` takes:

- a narinfo's record needs the records of its ``References`` (hash parts,
  which are the record keys, :func:`nix_records.narinfo_record.record_key`;
  a self-reference is ignored) and is labelled by its store-path basename;
- a pin's record (:mod:`nix_records.pins`) needs the records of the paths it
  holds and never expires; an emptied pin (no paths) is an ordinary record;
- a realisation's record (:mod:`nix_records.realisation_record`) needs its
  output path's record and its dependent realisations' (and their output
  paths'), :func:`~nix_records.realisation_record.realisation_links`;
- a build log's record, or metadata that is none of these, is not known
  (None): the age and idle rule alone decides it, and it needs nothing.

In a private cache there are two ways:

- with the keyring, the collector opens each record's metadata before
  calling the reader and maps the plain keys returned here to the keyed keys
  of the keyring's secrets;
- without it, the collector passes each record as stored and
  :func:`sealed_record_links` reads the links the publisher wrote in the
  clear (:func:`storage_network.wire.sealed_metadata.public_links`): keyed
  keys, used as they are, and a pin flag.  Records are then labelled, and
  pins named, by their keyed keys.  A record sealed before links were
  written in the clear (sealed metadata version 1) cannot be read so: it
  raises :class:`RecordError`, and the closure is incomplete
  (the collector then expires nothing unless forced).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nix_formats.errors import NixFormatError
from nix_formats.narinfo import NarInfo
from nix_formats.realisation import Realisation
from storage_network import Record
from storage_network.errors import RecordError
from storage_network.wire.sealed_metadata import is_sealed, public_links

from .build_logs import is_build_log
from .narinfo_record import narinfo_links
from .pins import PinError, is_pin, pin_from_record
from .realisation_record import REALISATION_MAGIC, is_realisation, realisation_links

__all__ = ["PathLinks", "record_links", "sealed_record_links"]

log = logging.getLogger("nixshard.gc")


@dataclass(frozen=True)
class PathLinks:
    """The links of a store path's, a pin's or a realisation's record (the shape
    :class:`storage_network.upkeep.record_expiry.RecordLinks` asks for).

    Attributes:
        needs: record keys of the records it needs while it stays (plain; keyed
            ones from :func:`sealed_record_links`).
        pin: the pin's name for a pin record, else None.
        label: the store-path basename, ``pin NAME``, ``realisation ID``, or
            (from :func:`sealed_record_links`) the keyed key.
    """

    needs: frozenset[str]
    pin: str | None
    label: str


def sealed_record_links(record: Record) -> PathLinks:
    """The links a private record carries in the clear (its metadata as stored, sealed);
    no cache secret needed.

    Returns:
        The keyed keys it needs, the pin flag (a pin is named by its keyed
        key) and its keyed key as label.

    Raises:
        RecordError: the metadata is not sealed, sealed metadata version 1 (no
            links in the clear), or malformed links.
    """
    if not is_sealed(record.metadata):
        raise RecordError(f"record {record.key}: its metadata is not sealed, in a private "
                          "network")
    found = public_links(record.metadata)
    if found is None:
        raise RecordError(f"record {record.key}: sealed metadata version 1 carries no links in "
                          "the clear (sealed before they were written); only the cache "
                          "secret reads them (--cache-secret), or push the path again")
    links, pin = found
    return PathLinks(frozenset(links), record.key if pin else None, record.key)


def record_links(record: Record) -> PathLinks | None:
    """The links of ``record``: with its metadata plain, read from it; with its
    metadata sealed (a private network's collector without the secret),
    :func:`sealed_record_links`.  None for a record that is neither a narinfo, a
    pin nor a realisation (a build log, something else, or malformed).

    Raises:
        RecordError: sealed metadata whose links cannot be read
            (:func:`sealed_record_links`).  Never for bad plain metadata: a
            malformed narinfo, pin or realisation is logged and answered None
            (the age and idle rule then decides it, like a build log).
    """
    metadata = record.metadata
    if is_sealed(metadata):
        return sealed_record_links(record)
    if is_build_log(metadata):
        return None
    if is_pin(metadata):
        try:
            pin = pin_from_record(record)
        except PinError as exc:
            log.warning("record %s: a malformed pin, treated as an ordinary record: %s",
                        record.key, exc)
            return None
        return PathLinks(frozenset(pin.record_keys), pin.name, f"pin {pin.name}")
    if is_realisation(metadata):
        return _realisation_links(record)
    try:
        narinfo = NarInfo.parse(metadata.decode("utf-8"))
        needs = narinfo_links(narinfo)
    except (UnicodeDecodeError, NixFormatError) as exc:
        log.debug("record %s holds neither a narinfo nor a pin (%s): the age and idle "
                  "rule alone decides it", record.key, exc)
        return None
    return PathLinks(frozenset(needs), None, narinfo.store_path.basename)


def _realisation_links(record: Record) -> PathLinks | None:
    """The links of a realisation's record; None (logged) when it does not parse."""
    try:
        realisation = Realisation.parse(record.metadata[len(REALISATION_MAGIC):])
    except NixFormatError as exc:
        log.warning("record %s: a malformed realisation, treated as an ordinary record: %s",
                    record.key, exc)
        return None
    return PathLinks(frozenset(realisation_links(realisation)), None,
                     f"realisation {realisation.id.text()}")

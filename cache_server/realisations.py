"""Realisations through the gateway: ``nix copy --to http://...`` of a CA derivation's
outputs, and substitution of them.

Nix 2.8 (``src/libstore/binary-cache-store.cc``) PUTs the JSON of each
realisation (:mod:`nix_formats.realisation`) to ``realisations/<id>.doi``
(``application/json``) after the store paths, dependencies first, without
asking first whether the cache holds it; a substituting Nix GETs it.  The
gateway keeps each as a signed record with no payload
(:mod:`nix_records.realisation_record`), so every gateway on the network
serves it, on a private network sealed like every other record.

An upload is committed (:func:`commit_realisation`) only when:

- it carries a signature by a trusted upload key, or the gateway signs it
  (``sign_uploads``; Nix 2.8 signs realisations only at build time, with
  ``secret-key-files``, never with a store URL's ``?secret-key=``): else 403;
- its output path is in the network under that name, and every realisation
  it depends on is there with the output path it names (what ``nix copy``
  uploads first): else 400; one that names another output path is 409;
- the network holds no realisation of its id that says otherwise: the
  first committed one wins (409 for another output path, 200 and nothing
  written for the same one, whatever its signatures).
"""

from __future__ import annotations

import asyncio
import logging

from nix_formats.realisation import DrvOutput, Realisation, RealisationError
from nix_records import (
    RecordContentError,
    publish,
    realisation_from_record,
    realisation_record,
    realisation_record_key,
    store,
)
from storage_network import (
    NetworkClient,
    NotFoundError,
    Publisher,
    RecordConflictError,
)

from .config import UploadConfig
from .errors import (
    BadRecordError,
    BadRequestError,
    PathConflictError,
    UploadRejectedError,
)
from .records import RecordLookup
from .uploads import gateway_signs

log = logging.getLogger("nixshard.serve")


def parse_drv_output(name: str) -> DrvOutput:
    """The derivation output named by the ``<id>`` of ``realisations/<id>.doi``.

    Raises:
        BadRequestError: not ``sha256:<64 hex or 52 nix32>!<output name>``
            (:meth:`nix_formats.realisation.DrvOutput.parse`).
    """
    try:
        return DrvOutput.parse(name)
    except RealisationError as exc:
        raise BadRequestError(f"bad realisation name: {exc}") from exc


async def load_realisation(records: RecordLookup, drv_output: DrvOutput) -> Realisation:
    """The realisation of ``drv_output`` the network holds, through the gateway's record
    lookup (:meth:`RecordLookup.record`: hits cached, concurrent lookups shared, an
    absence never remembered).

    Raises:
        NotFoundError: none (or the key holds another kind of record).
        BadRecordError: a signed realisation record whose content is wrong.
        StorageNetworkError: the network cannot tell (e.g. RecordUnavailableError).
    """
    record = await records.record(realisation_record_key(drv_output))
    try:
        realisation = realisation_from_record(drv_output, record)
    except RecordContentError as exc:
        raise BadRecordError(str(exc)) from exc
    if realisation is None:
        raise NotFoundError(f"no realisation of {drv_output}")
    return realisation


async def _held(records: RecordLookup, drv_output: DrvOutput) -> Realisation | None:
    """The realisation of ``drv_output`` the network holds, or None."""
    try:
        return await load_realisation(records, drv_output)
    except NotFoundError:
        return None


def signed_for_upload(realisation: Realisation, uploads: UploadConfig) -> Realisation:
    """``realisation`` if a trusted upload key signed it, else signed by the gateway.

    Raises:
        ForbiddenError: no trusted signature and ``sign_uploads`` is off.
    """
    if gateway_signs(uploads, bool(realisation.signed_by(uploads.trusted_keys)),
                     f"realisation {realisation.id}",
                     "build with `secret-key-files` set (Nix signs realisations when it "
                     "builds them)"):
        return realisation.sign(uploads.nix_key)
    return realisation


async def _check_dependency(records: RecordLookup, realisation: Realisation, dep: DrvOutput,
                            path: str) -> None:
    held = await _held(records, dep)
    if held is None:
        raise UploadRejectedError(f"realisation {realisation.id} depends on {dep}, which the "
                                  "cache does not hold (upload it first)")
    if held.out_path.basename != path:
        raise PathConflictError(f"realisation {realisation.id} depends on {dep} = {path}, but "
                                f"the cache holds {dep} = {held.out_path.basename}")


async def check_closure(records: RecordLookup, realisation: Realisation) -> None:
    """Check that the network holds ``realisation``'s output path and its dependencies.

    Raises:
        UploadRejectedError: the output path (under that name) or a dependent
            realisation is not in the network.
        PathConflictError: a dependent realisation is held with another output path.
        BadRecordError, StorageNetworkError: from the lookups.
    """
    out = realisation.out_path
    try:
        entry = await records.get(out.hash_part, remembered_absence=False)
    except NotFoundError:
        raise UploadRejectedError(f"realisation {realisation.id}: its output path {out.path} "
                                  "is not in the cache (upload the path first)") from None
    if entry.narinfo.store_path != out:
        raise UploadRejectedError(f"realisation {realisation.id} names {out.path}, but the "
                                  f"cache holds {entry.narinfo.store_path.path}")
    await asyncio.gather(*(_check_dependency(records, realisation, dep, path.basename)
                           for dep, path in realisation.dependent))


async def store_realisation(net: NetworkClient, publisher: Publisher,
                            realisation: Realisation) -> int:
    """Write the record of ``realisation`` (empty payload; sealed on a private network).

    Returns:
        The record's size in bytes.

    Raises:
        RecordConflictError: the key holds a record of another content.
        StorageNetworkError: fewer than ``record_replicas`` nodes took it.
    """
    stored = await store(net, publisher, ())
    return await publish(net, publisher, realisation_record(realisation), stored)


def _conflict(realisation: Realisation, held: Realisation) -> PathConflictError:
    return PathConflictError(f"realisation {realisation.id} exists with output path "
                             f"{held.out_path.path}, not {realisation.out_path.path}")


async def commit_realisation(net: NetworkClient, records: RecordLookup, uploads: UploadConfig,
                             realisation: Realisation) -> int:
    """Check an uploaded realisation and write its record (see the module docstring).

    Returns:
        201 when written, 200 when the network already held the same one.

    Raises:
        ForbiddenError (403), UploadRejectedError (400), PathConflictError (409),
        BadRecordError (502), StorageNetworkError (503): see the module docstring.
    """
    held = await _held(records, realisation.id)
    if held is not None:
        if not held.same_build(realisation):
            raise _conflict(realisation, held)
        return 200
    realisation = signed_for_upload(realisation, uploads)
    await check_closure(records, realisation)
    try:
        await store_realisation(net, uploads.publisher, realisation)
    except RecordConflictError as exc:  # another gateway committed one first
        held = await _held(records, realisation.id)
        if held is None or not held.same_build(realisation):
            raise (_conflict(realisation, held) if held else exc) from exc
        return 200
    log.info("stored the realisation %s -> %s", realisation.id, realisation.out_path.path)
    return 201

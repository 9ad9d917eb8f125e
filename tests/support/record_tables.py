"""Expiry plans over hand-made records, for tests of garbage collection's step 2.

:func:`reader` reads the links of hand-made metadata; :func:`plan_records`
writes records (no copies on any node) into a fresh
:class:`~storage_network.upkeep.record_table.RecordTable`, reads their links
as garbage collection does, and plans; the tables stay open for the test to
query the plan, and :func:`close_tables` (an autouse fixture's job) closes them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from storage_network.coding.sealing import Keyring
from storage_network.upkeep.record_expiry import (
    ExpiryPlan,
    LinkReader,
    note_links,
    plan_expiry,
)
from storage_network.upkeep.record_table import RecordTable
from storage_network.wire.record import Record

_open: list[RecordTable] = []


@dataclass(frozen=True)
class Links:
    """What a hand-made record says of others (a
    :class:`~storage_network.upkeep.record_expiry.RecordLinks`)."""

    needs: Collection[str]
    pin: str | None
    label: str


def reader(record: Record) -> Links:
    """Metadata ``needs=a,b`` or ``pin=NAME;needs=a``: the keys the record needs, and
    its pin name; labelled by the first 6 characters of its key."""
    fields = dict(part.split("=", 1) for part in record.metadata.decode().split(";") if part)
    needs = [k for k in fields.get("needs", "").split(",") if k]
    return Links(needs, fields.get("pin"), record.key[:6])


def plan_records(records: Iterable[tuple[Record, float]], t0: float,
                 max_age: float | None, max_idle: float | None,
                 reader: LinkReader | None = None,
                 keyring: Keyring | None = None) -> ExpiryPlan:
    """Plan the expiry at ``t0`` of live ``records`` (each with its last read, unix
    seconds), their links read by ``reader`` under ``keyring``."""
    table = RecordTable()
    _open.append(table)
    for record, last_read in records:
        table.add(record.key, record, last_read, {})
        if reader is not None:
            note_links(table, record, reader, keyring)
    return plan_expiry(table, t0, max_age, max_idle, closure=reader is not None)


def close_tables() -> None:
    """Close every table :func:`plan_records` opened."""
    while _open:
        _open.pop().close()

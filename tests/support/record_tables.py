"""Expiry plans over hand-made records, for tests of garbage collection's step 2.

:func:`plan_records` writes records (no copies on any node) into a fresh
:class:`~storage_network.upkeep.record_table.RecordTable`, reads their links
as garbage collection does, and plans; the tables stay open for the test to
query the plan, and :func:`close_tables` (an autouse fixture's job) closes them.
"""

from __future__ import annotations

from collections.abc import Iterable

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

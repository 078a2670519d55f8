"""Insert many new rows at once: binary COPY on Postgres, a plain ORM flush elsewhere.

A first sync stores tens of thousands of messages. An ORM flush sends them as multi-row
INSERTs whose thousands of named parameters psycopg converts in Python for every statement
(long statements are not cached), which cost the syncing process about a sixth of its time.
Binary COPY sends the same rows as one stream, encoded in C, with no escaping of the raw mail;
Postgres loads it faster too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import psycopg
from psycopg.types.json import Json
from sqlalchemy import JSON, Column, Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.schema import ColumnDefault

from triage.adapters.db.tables import Attachment, Message

MESSAGES = cast(Table, Message.__table__)
ATTACHMENTS = cast(Table, Attachment.__table__)


def insert_messages(session: Session, rows: Sequence[Message]) -> None:
    """Insert new messages with their attachments in the session's transaction and set each
    row's `id`. A row breaking a unique key raises IntegrityError, as a flush would."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.add_all(rows)
        session.flush()
        return
    bound = session.connection()
    connection = bound.connection.driver_connection
    if not isinstance(connection, psycopg.Connection):
        raise TypeError(f"COPY needs a psycopg connection, not {type(connection).__name__}")
    try:
        with connection.cursor() as cursor:
            for row, new_id in zip(rows, _next_ids(cursor, MESSAGES, len(rows)), strict=True):
                row.id = new_id
            _copy(cursor, MESSAGES, rows)
            children = [(row.id, part) for row in rows for part in row.attachments]
            _copy(
                cursor,
                ATTACHMENTS,
                [part for _id, part in children],
                fixed={"message_id": [message_id for message_id, _part in children]},
            )
    except psycopg.Error as exc:
        # As SQLAlchemy's own errors, so callers see what a flush would raise: IntegrityError
        # for a duplicate, OperationalError (and a connection dropped from the pool) for a
        # database that went away mid-COPY.
        lost = bound.dialect.is_disconnect(cast(Any, exc), bound.connection, None)
        if lost:
            bound.invalidate(exc)
        raise DBAPIError.instance(
            "COPY messages", None, exc, psycopg.Error, connection_invalidated=lost
        ) from exc


def _next_ids(cursor: psycopg.Cursor[Any], table: Table, count: int) -> list[int]:
    """`count` values of the table's ID sequence, taken now (a rolled-back COPY wastes them,
    as a rolled-back INSERT would)."""
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
        (table.name, count),
    )
    return [int(found[0]) for found in cursor.fetchall()]


def _copy(
    cursor: psycopg.Cursor[Any],
    table: Table,
    rows: Sequence[Any],
    *,
    fixed: dict[str, Sequence[Any]] | None = None,
) -> None:
    """COPY the rows' column values; Python-side defaults applied as a flush would, columns
    with a database default left to it when no row sets them (a serial ID when not set)."""
    if not rows:
        return
    fixed = fixed or {}
    columns = [
        column
        for column in table.columns
        if column.name in fixed
        or not (
            (column.server_default is not None or column.primary_key)
            and all(getattr(row, column.key) is None for row in rows)
        )
    ]
    converters = [_converter(column) for column in columns]
    names = ", ".join(f'"{column.name}"' for column in columns)
    type_oids = _column_types(cursor, table.name)
    with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
        copy.set_types([type_oids[column.name] for column in columns])
        for index, row in enumerate(rows):
            copy.write_row(
                [
                    fixed[column.name][index]
                    if column.name in fixed
                    else convert(getattr(row, column.key))
                    for column, convert in zip(columns, converters, strict=True)
                ]
            )


def _column_types(cursor: psycopg.Cursor[Any], table: str) -> dict[str, int]:
    """Each column's type (its OID), which binary COPY needs to encode the values."""
    found = _types_seen.get(table)
    if found is None:
        cursor.execute(
            "SELECT attname, atttypid::int FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        )
        found = _types_seen[table] = {str(name): int(oid) for name, oid in cursor.fetchall()}
    return found


_types_seen: dict[str, dict[str, int]] = {}


def _converter(column: Column[Any]) -> Callable[[Any], Any]:
    """What an attribute's value is written as: its Python-side default when unset, JSON wrapped."""
    default = column.default
    if isinstance(default, ColumnDefault) and default.is_callable:
        make_default: Callable[[], Any] = lambda: default.arg(None)  # noqa: E731
    elif isinstance(default, ColumnDefault) and default.is_scalar:
        make_default = lambda: default.arg  # noqa: E731
    else:
        make_default = lambda: None  # noqa: E731

    if isinstance(column.type, JSON):

        def to_json(value: Any) -> Any:
            return Json(make_default() if value is None else value)

        return to_json

    def plain(value: Any) -> Any:
        return make_default() if value is None else value

    return plain

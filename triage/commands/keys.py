"""`triage keys rotate`: re-encrypt every stored secret under the first of TRIAGE_SECRET_KEYS."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from sqlalchemy import JSON, Column, Table, select, update
from sqlalchemy.orm import Session

from triage.adapters.db.session import transaction
from triage.adapters.db.tables import Base
from triage.adapters.secrets import SecretBox, SecretDecryptError
from triage.commands.setup import CommandError
from triage.runtime import Runtime

SUFFIX = "_enc"  # the naming rule every encrypted column (and JSON entry) follows


def keys_rotate(rt: Runtime, _args: argparse.Namespace) -> str:
    """All or nothing: one value that no key decrypts leaves every row as it was."""
    with transaction(rt.db) as session:
        counts, failures = rotate_all(session, rt.secrets)
        if failures:
            shown = ", ".join(failures[:20]) + (" ..." if len(failures) > 20 else "")
            raise CommandError(
                f"{len(failures)} stored secrets do not decrypt with any key in "
                f"TRIAGE_SECRET_KEYS (keep the old key after the new one): {shown}; "
                "nothing was changed"
            )
    if not counts:
        return "no stored secrets to re-encrypt"
    listed = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    return f"re-encrypted under the first key: {listed} (total {sum(counts.values())})"


def rotate_all(session: Session, secrets: SecretBox) -> tuple[Counter[str], list[str]]:
    """Re-encrypt in place; returns counts per column and the values that did not decrypt."""
    counts: Counter[str] = Counter()
    failures: list[str] = []
    for table in Base.metadata.sorted_tables:
        text_columns = [c for c in table.columns if c.name.endswith(SUFFIX)]
        if not text_columns:
            continue
        # JSON settings beside encrypted columns may hold encrypted entries of their own.
        json_columns = [c for c in table.columns if isinstance(c.type, JSON)]
        for row in session.execute(select(table.c.id, *text_columns, *json_columns)).mappings():
            changes: dict[str, Any] = {}
            for column in text_columns:
                where = f"{table.name}.{column.name}"
                value = row[column]
                if value and (new := _rotated(secrets, value, where, row["id"], failures)):
                    changes[column.name] = new
                    counts[where] += 1
            for column in json_columns:
                rotated = _rotated_json(secrets, table, column, row, counts, failures)
                if rotated is not None:
                    changes[column.name] = rotated
            if changes:
                session.execute(update(table).where(table.c.id == row["id"]).values(**changes))
    return counts, failures


def _rotated(
    secrets: SecretBox, value: str, where: str, row_id: int, failures: list[str]
) -> str | None:
    try:
        return secrets.rotate(value)
    except SecretDecryptError:
        failures.append(f"{where} of row {row_id}")
        return None


def _rotated_json(
    secrets: SecretBox,
    table: Table,
    column: Column[Any],
    row: Any,
    counts: Counter[str],
    failures: list[str],
) -> dict[str, Any] | None:
    value = row[column]
    if not isinstance(value, dict):
        return None
    entries = {k: v for k, v in value.items() if k.endswith(SUFFIX) and isinstance(v, str) and v}
    if not entries:
        return None
    updated = dict(value)
    for key, token in entries.items():
        where = f"{table.name}.{column.name}.{key}"
        new = _rotated(secrets, token, where, row["id"], failures)
        if new:
            updated[key] = new
            counts[where] += 1
    return updated

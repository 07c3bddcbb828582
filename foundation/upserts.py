"""Counter rows: insert, or add to the row that is already there, in one statement.

The ingestion aggregates (usage and denied traffic per day), the outbox's delivery
tallies and the policy-update histogram buckets all keep counts that several writers
add to at once; an ``INSERT ... ON CONFLICT DO UPDATE`` adds atomically on both
PostgreSQL and SQLite, so no writer loses another's count.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection


def add_to_rows(
    table: str,
    conflict: Sequence[str],
    columns: Sequence[tuple[str, str]],
    rows: list[tuple[Any, ...]],
    *,
    add: Sequence[str],
    latest: Sequence[str] = (),
    saturate_at: int | None = None,
) -> None:
    """Insert ``rows``, or, where a row with the same ``conflict`` columns exists, add the
    ``add`` columns to it and keep the later of each ``latest`` column.

    With ``saturate_at``, an ``add`` column stops at that value instead of overflowing (the
    added values are never negative): a counter at its ceiling stays there, and the row keeps
    taking the other columns' updates.

    ``columns`` are (name, PostgreSQL array type): on PostgreSQL the rows travel as one
    array per column (one statement whatever their number). Rows are sorted, so concurrent
    writers lock shared rows in the same order and cannot deadlock.
    """
    if not rows:
        return
    rows = sorted(rows)
    names = [name for name, _ in columns]
    quoted = ", ".join(f'"{n}"' for n in names)
    if saturate_at is None:
        updates = [f'"{name}" = "{table}"."{name}" + EXCLUDED."{name}"' for name in add]
    else:
        # Compared before adding: the sum itself would overflow a bigint.
        updates = [
            f'"{name}" = CASE WHEN "{table}"."{name}" > {int(saturate_at)} - EXCLUDED."{name}" '
            f'THEN {int(saturate_at)} ELSE "{table}"."{name}" + EXCLUDED."{name}" END'
            for name in add
        ]
    updates += [
        f'"{name}" = CASE WHEN EXCLUDED."{name}" > "{table}"."{name}" '
        f'THEN EXCLUDED."{name}" ELSE "{table}"."{name}" END'
        for name in latest
    ]
    on_conflict = f"ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {', '.join(updates)}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
            cursor.execute(
                f'INSERT INTO "{table}" ({quoted}) SELECT * FROM unnest({arrays}) {on_conflict}',  # noqa: S608
                [list(column) for column in zip(*rows, strict=True)],
            )
        else:
            placeholders = ", ".join(["%s"] * len(names))
            adapt = connection.ops.adapt_datetimefield_value
            cursor.executemany(
                f'INSERT INTO "{table}" ({quoted}) VALUES ({placeholders}) {on_conflict}',  # noqa: S608
                [tuple(adapt(v) if isinstance(v, datetime) else v for v in row) for row in rows],
            )

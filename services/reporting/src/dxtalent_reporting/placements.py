"""The placement counts of the progress reports, kept beside the per-employee read model.

Tables (in the service's own schema; see `domain.placements` for what they mean):
- `placement_days(day, department, level, employed, n)`: on `day`, `n` more employees enter
  that placement (negative: leave it).
- `placement_years(fiscal_year, department, level, employed, n)`: the same changes summed per
  fiscal year of their day.

A fact about an employee (record, departure, nomination, level certified or revoked) is written
by `PlacementWriter.write` in the consumer's transaction, in one statement that also reads the
employee's rows as they were before it (one snapshot) and returns the row the fact wrote, if
any. The employee's `Standing` before and after gives the count changes (pure:
`domain.placements.placement_changes`), applied by one more statement. A fact the idempotent
write does not take (a duplicate, an older record) returns no row and changes no count.

The count rows are shared by many employees, and a change is only right against the rows
before it: replicas of the service take turns (one transaction-level advisory lock per read
model, taken before the first such write of a batch and held to its COMMIT), so two batches
never interleave their writes and never deadlock on the shared rows.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import asyncpg

from dxtalent_infra.migrations import Migration, quote_ident
from dxtalent_reporting.domain.placements import placement_changes, yearly
from dxtalent_reporting.domain.progress import Standing
from dxtalent_reporting.domain.standings import assemble_standings

MIGRATION = Migration(
    3,
    "placement counts of the progress reports, per day and per fiscal year",
    """
    DO $$ BEGIN
      IF EXISTS (SELECT 1 FROM {schema}.employee_records)
         OR EXISTS (SELECT 1 FROM {schema}.departures)
         OR EXISTS (SELECT 1 FROM {schema}.nominations)
         OR EXISTS (SELECT 1 FROM {schema}.levels) THEN
        RAISE EXCEPTION 'the reporting read model predates its placement counts: rebuild it '
          '(drop its schema and its durable consumer, then start the service)';
      END IF;
    END $$;
    CREATE TABLE {schema}.placement_days (
        day date NOT NULL,
        department text NOT NULL,
        level int NOT NULL,
        employed boolean NOT NULL,
        n int NOT NULL,
        PRIMARY KEY (day, department, level, employed)
    );
    CREATE TABLE {schema}.placement_years (
        fiscal_year int NOT NULL,
        department text NOT NULL,
        level int NOT NULL,
        employed boolean NOT NULL,
        n int NOT NULL,
        PRIMARY KEY (fiscal_year, department, level, employed)
    );
    CREATE INDEX employee_records_named ON {schema}.employee_records
        (department_code, effective_date, fact_id) WHERE department_name IS NOT NULL;
    """,
)

Row = tuple[str, Any, Any, Any]  # kind, day, department, number (see `PlacementWriter`)


def returning(kind: str, day: str, code: str, number: str, gone: str = "false") -> str:
    """The `RETURNING` list of a write: the row it wrote as the employee's rows are read
    (kind, day, department, number), and `gone` for a tombstone."""
    return f"RETURNING '{kind}'::text, {day}::date, {code}::text, {number}::int, {gone}::boolean"


class PlacementWriter:
    """Writes one fact about an employee and keeps the placement counts of `schema` right."""

    def __init__(self, schema: str) -> None:
        q = quote_ident(schema)
        self._lock_key = zlib.crc32(f"dxtalent-placements:{schema}".encode()) - 2**31
        # one row per fact the report reads: (kind, day, department, number)
        self._rows = (
            f"SELECT false, 'r'::text, effective_date, department_code, NULL::int, false"
            f" FROM {q}.employee_records WHERE employee_id = $1"
            f" UNION ALL SELECT false, 'd', left_on, NULL, NULL, false"
            f" FROM {q}.departures WHERE employee_id = $1"
            f" UNION ALL SELECT false, 'n', NULL, department_code, fiscal_year, false"
            f" FROM {q}.nominations WHERE employee_id = $1"
            f" UNION ALL SELECT false, 'l', certified_on, department_code, level, false"
            f" FROM {q}.levels WHERE employee_id = $1 AND NOT revoked"
        )
        self._apply = f"""
            WITH days AS (
              INSERT INTO {q}.placement_days AS p (day, department, level, employed, n)
              SELECT * FROM unnest($1::date[], $2::text[], $3::int[], $4::bool[], $5::int[])
              ON CONFLICT (day, department, level, employed) DO UPDATE SET n = p.n + EXCLUDED.n)
            INSERT INTO {q}.placement_years AS y (fiscal_year, department, level, employed, n)
            SELECT * FROM unnest($6::int[], $7::text[], $8::int[], $9::bool[], $10::int[])
            ON CONFLICT (fiscal_year, department, level, employed) DO UPDATE
            SET n = y.n + EXCLUDED.n"""

    def statement(self, write: str) -> str:
        """`write` (an upsert of the employee `$1` ending in `returning(...)`) together with
        the employee's rows before it, in one statement and one snapshot."""
        return f"WITH w AS ({write}) SELECT true, * FROM w UNION ALL {self._rows}"

    async def write(self, conn: asyncpg.Connection, statement: str, *args: object) -> None:
        """Run a `statement(...)` for the employee `args[0]` and apply the count changes."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", self._lock_key)
        rows = await conn.fetch(statement, *args)
        written = [r for r in rows if r[0]]
        if not written:
            return
        employee = str(args[0])
        before = [(r[1], r[2], r[3], r[4]) for r in rows if not r[0]]
        new = written[0]
        after = [row for row in before if _key(row) != _key((new[1], new[2], new[3], new[4]))]
        if not new[5]:
            after.append((new[1], new[2], new[3], new[4]))
        changes = placement_changes(_standing(employee, before), _standing(employee, after))
        if not changes:
            return
        years = yearly(changes)
        await conn.execute(
            self._apply, *_columns(list(changes.items())), *_columns(list(years.items()))
        )


def _key(row: Row) -> tuple[object, ...]:
    """The primary key of a read-model row within one employee's rows."""
    kind, day, code, number = row
    match kind:
        case "r":
            return (kind, day)
        case "d":
            return (kind,)
        case "n":
            return (kind, number, code)
        case _:
            return (kind, number)


def _standing(employee: str, rows: Sequence[Row]) -> Standing | None:
    """The employee's `Standing` from their rows, None when there are none."""
    found = assemble_standings(
        [(employee, r[1], r[2]) for r in rows if r[0] == "r"],
        [(employee, r[1]) for r in rows if r[0] == "d"],
        [(employee, r[3], r[1], r[2]) for r in rows if r[0] == "l"],
        [(employee, r[3], r[2]) for r in rows if r[0] == "n"],
    )
    return found[0] if found else None


def _columns(items: list[tuple[tuple[object, ...], int]]) -> list[list[object]]:
    """Rows of (key, n) as the column arrays of an `unnest`."""
    width = len(items[0][0]) if items else 4
    columns: list[list[object]] = [[] for _ in range(width + 1)]
    for key, n in items:
        for i, value in enumerate(key):
            columns[i].append(value)
        columns[width].append(n)
    return columns

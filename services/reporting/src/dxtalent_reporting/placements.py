"""The counts of the progress reports and of the 区分別 page, kept beside the per-employee read
model.

Tables (in the service's own schema; see `domain.placements` and `dxtalent_contracts.memberships` for what
they mean):
- `placement_days(day, department, level, employed, n)`: on `day`, `n` more employees enter
  that placement (negative: leave it); `placement_years` the same summed per fiscal year.
- `membership_days(day, categories, skills, n)`: on `day`, `n` more employees are members with
  those categories (space-separated codes of the record in force) and skills held;
  `membership_years` the same summed per fiscal year.

A fact about an employee (record, departure, nomination, level certified or revoked, skill
acquired or revoked) is written by `PlacementWriter.write` in the consumer's transaction, in one
statement that also reads the employee's rows as they were before it (one snapshot) and returns
the row the fact wrote, if any. The employee before and after give the count changes (pure:
`placement_changes`, `membership_changes`), applied by one more statement. A fact the
idempotent write does not take (a duplicate, an older record) returns no row and changes no
count.

The count rows are shared by many employees, and a change is only right against the rows
before it: replicas of the service take turns (one transaction-level advisory lock per read
model, taken before the first such write of a batch and held to its COMMIT), so two batches
never interleave their writes and never deadlock on the shared rows.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from dxtalent_contracts.fiscal import yearly
from dxtalent_contracts.memberships import Member, membership_changes
from dxtalent_infra.eventstore import lock_key
from dxtalent_infra.membership_counts import MEMBERSHIP_PRIVILEGES, MEMBERSHIP_TABLES
from dxtalent_infra.migrations import Migration, Privilege, quote_ident
from dxtalent_reporting.domain.placements import Change, placement_changes
from dxtalent_reporting.domain.progress import Standing
from dxtalent_reporting.domain.standings import assemble_standings

MIGRATION = Migration(
    3,
    "placement and membership counts of the reports, per day and per fiscal year",
    """
    DO $$ BEGIN
      IF EXISTS (SELECT 1 FROM {schema}.employee_records)
         OR EXISTS (SELECT 1 FROM {schema}.departures)
         OR EXISTS (SELECT 1 FROM {schema}.nominations)
         OR EXISTS (SELECT 1 FROM {schema}.levels)
         OR EXISTS (SELECT 1 FROM {schema}.skills) THEN
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
    """
    + MEMBERSHIP_TABLES,
)

#: what the service role may do to the count tables (granted by the migration runner, 0185):
#: rows are added to and updated, never deleted
PRIVILEGES: tuple[Privilege, ...] = (
    *(
        Privilege(table, ("SELECT", "INSERT", "UPDATE"))
        for table in ("placement_days", "placement_years")
    ),
    *MEMBERSHIP_PRIVILEGES,
)

Row = tuple[str, Any, Any, Any, Any]  # kind, day, code, number, names (see `PlacementWriter`)


def returning(
    kind: str, day: str, code: str, number: str, names: str = "NULL", gone: str = "false"
) -> str:
    """The `RETURNING` list of a write: the row it wrote as the employee's rows are read
    (kind, day, code, number, names), and `gone` for a tombstone."""
    return (
        f"RETURNING '{kind}'::text, {day}::date, {code}::text, {number}::int, {names}::text[],"
        f" {gone}::boolean"
    )


class PlacementWriter:
    """Writes one fact about an employee and keeps the placement counts of `schema` right."""

    def __init__(self, schema: str) -> None:
        q = quote_ident(schema)
        self._lock_key = lock_key(schema, "placements")
        # one row per fact the counts read: (kind, day, code, number, names)
        self._rows = (
            f"SELECT false, 'r'::text, effective_date, department_code, NULL::int, categories,"
            f" false FROM {q}.employee_records WHERE employee_id = $1"
            f" UNION ALL SELECT false, 'd', left_on, NULL, NULL, NULL, false"
            f" FROM {q}.departures WHERE employee_id = $1"
            f" UNION ALL SELECT false, 'n', NULL, department_code, fiscal_year, NULL, false"
            f" FROM {q}.nominations WHERE employee_id = $1"
            f" UNION ALL SELECT false, 'l', certified_on, department_code, level, NULL, false"
            f" FROM {q}.levels WHERE employee_id = $1 AND NOT revoked"
            f" UNION ALL SELECT false, 's', acquired_on, skill, NULL, NULL, false"
            f" FROM {q}.skills WHERE employee_id = $1 AND NOT revoked"
        )
        upsert = (
            "INSERT INTO {q}.{table} AS c ({columns}, n) SELECT * FROM unnest({arrays})"
            " ON CONFLICT ({columns}) DO UPDATE SET n = c.n + EXCLUDED.n"
        )
        tables = (
            ("placement_days", "day, department, level, employed", "date text int bool"),
            ("placement_years", "fiscal_year, department, level, employed", "int text int bool"),
            ("membership_days", "day, categories, skills", "date text text"),
            ("membership_years", "fiscal_year, categories, skills", "int text text"),
        )
        statements, position = [], 1
        for table, columns, types in tables:
            arrays = []
            for kind in [*types.split(), "int"]:
                arrays.append(f"${position}::{kind}[]")
                position += 1
            statements.append(
                upsert.format(q=q, table=table, columns=columns, arrays=", ".join(arrays))
            )
        self._apply = (
            "WITH "
            + ", ".join(f"t{i} AS ({sql})" for i, sql in enumerate(statements[:-1]))
            + " "
            + statements[-1]
        )

    def statement(self, write: str) -> str:
        """`write` (an upsert of the employee `$1` ending in `returning(...)`) together with
        the employee's rows before it, in one statement and one snapshot."""
        return f"WITH w AS ({write}) SELECT true, * FROM w UNION ALL {self._rows}"

    async def lock(self, conn: asyncpg.Connection) -> None:
        """Take this read model's turn (held to COMMIT); before any `write` of a transaction."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", self._lock_key)

    async def write(
        self,
        conn: asyncpg.Connection,
        statement: str,
        *args: object,
        pending: PendingCounts | None = None,
    ) -> None:
        """Run a `statement(...)` for the employee `args[0]` and apply its count changes; with
        `pending` (the caller holds the `lock` and applies them later) add them to it."""
        if pending is None:
            await self.lock(conn)
        rows = await conn.fetch(statement, *args)
        written = [r for r in rows if r[0]]
        if not written:
            return
        employee = str(args[0])
        before: list[Row] = [(r[1], r[2], r[3], r[4], r[5]) for r in rows if not r[0]]
        new = written[0]
        wrote: Row = (new[1], new[2], new[3], new[4], new[5])
        after = [row for row in before if _key(row) != _key(wrote)]
        if not new[6]:
            after.append(wrote)
        changes = pending if pending is not None else PendingCounts()
        changes.placed.update(
            placement_changes(_standing(employee, before), _standing(employee, after))
        )
        for (day, names, skills), n in membership_changes(
            _member(employee, before), _member(employee, after)
        ).items():
            changes.members[(day, " ".join(names), " ".join(skills))] += n
        if pending is None:
            await self.apply(conn, changes)

    async def apply(self, conn: asyncpg.Connection, changes: PendingCounts) -> None:
        """Add `changes` to the count tables (one statement; none when nothing changed)."""
        placed = {k: n for k, n in changes.placed.items() if n}
        members = {k: n for k, n in changes.members.items() if n}
        if not placed and not members:
            return
        await conn.execute(
            self._apply,
            *_columns(sorted(placed.items()), 4),
            *_columns(list(yearly(placed).items()), 4),
            *_columns(sorted(members.items()), 3),
            *_columns(list(yearly(members).items()), 3),
        )


@dataclass
class PendingCounts:
    """Count changes not yet applied: placements, and memberships with codes joined."""

    placed: Counter[Change] = field(default_factory=Counter)
    members: Counter[tuple[dt.date, str, str]] = field(default_factory=Counter)


def _key(row: Row) -> tuple[object, ...]:
    """The primary key of a read-model row within one employee's rows."""
    kind, day, code, number, _ = row
    match kind:
        case "r":
            return (kind, day)
        case "d":
            return (kind,)
        case "n":
            return (kind, number, code)
        case "s":
            return (kind, code)
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


def _member(employee: str, rows: Sequence[Row]) -> Member:
    """The employee as the category counts read them."""
    return Member(
        employee_id=employee,
        records=tuple(sorted((r[1], tuple(r[4] or ())) for r in rows if r[0] == "r")),
        left_on=next((r[1] for r in rows if r[0] == "d"), None),
        skills={r[2]: r[1] for r in rows if r[0] == "s" and r[1] is not None},
    )


def _columns(items: list[tuple[tuple[object, ...], int]], width: int) -> list[list[object]]:
    """Rows of (key, n) as the column arrays of an `unnest`."""
    columns: list[list[object]] = [[] for _ in range(width + 1)]
    for key, n in items:
        for i, value in enumerate(key):
            columns[i].append(value)
        columns[width].append(n)
    return columns

"""The counts of the progress reports and of the 区分別 page, kept beside the per-employee read
model.

Tables (in the service's own schema; see `domain.placements` and `dxtalent_contracts.memberships` for what
they mean):
- `placement_days(day, department, level, employed, n)`: on `day`, `n` more employees enter
  that placement (negative: leave it); `placement_years` the same summed per fiscal year.
- `membership_days(day, categories, skills, n)`: on `day`, `n` more employees are members with
  those categories (space-separated codes of the record in force) and skills held;
  `membership_years` the same summed per fiscal year.

A segment of facts about employees (records, departures, nominations, levels certified or
revoked, skills acquired or revoked) is written in the consumer's transaction by one statement
that also reads those employees' rows as they were before it (one snapshot: `segment_sql`,
`segment`) and returns the rows it wrote; their rows after it are those before with the
written ones put in (decision 0270). Each employee before and after give the count changes
(`placement_changes`, `membership_changes` of `domain.placements` and
`dxtalent_contracts.memberships`, computed in one sweep per timeline: `add`), applied by one
more statement. Both are differences of one function of the employee (after minus before), so
the changes of the whole segment are the sum of what each fact did one at a time. A fact the
idempotent writes do not take (a duplicate, an older record) changes no row and no count.

The count rows are shared by many employees, and a change is only right against the rows
before it: replicas of the service take turns (one transaction-level advisory lock per read
model, taken before the segment's write and held to its COMMIT), so two batches never
interleave their writes and never deadlock on the shared rows.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from dxtalent_contracts.fiscal import BEGINNING, fiscal_year_start, yearly
from dxtalent_contracts.memberships import Member, membership_changes_of
from dxtalent_infra.eventstore import lock_key
from dxtalent_infra.membership_counts import MEMBERSHIP_PRIVILEGES, MEMBERSHIP_TABLES
from dxtalent_infra.migrations import Migration, Privilege, quote_ident
from dxtalent_reporting.domain.placements import Change, Placement
from dxtalent_reporting.domain.progress import UNKNOWN_DEPARTMENT

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

#: the tables the counts read: (table, the columns of a `Row`, whether a row can be a
#: tombstone (`revoked`), which the counts do not read)
_COUNTED = (
    (
        "employee_records",
        "'r'::text, effective_date, department_code, NULL::int, categories",
        False,
    ),
    ("departures", "'d', left_on, NULL, NULL, NULL", False),
    ("nominations", "'n', NULL, department_code, fiscal_year, NULL", False),
    ("levels", "'l', certified_on, department_code, level, NULL", True),
    ("skills", "'s', acquired_on, skill, NULL, NULL", True),
)
#: the kinds of rows a placement timeline reads (`placement_steps`), and a membership one
#: (`_member`)
_PLACED = frozenset("rdln")
_MEMBERS = frozenset("rds")
#: the columns of a `Row` after its kind that make its table's key (with the employee)
_KEY = {"r": (1,), "d": (), "n": (2, 3), "l": (3,), "s": (2,)}


class PlacementWriter:
    """Reads employees' rows before and after a segment's writes, and keeps the placement
    counts of `schema` right."""

    def __init__(self, schema: str) -> None:
        q = quote_ident(schema)
        self._lock_key = lock_key(schema, "placements")
        #: the rows the counts read of the employees `$1` (`text[]`), one per fact:
        #: (employee, kind, day, code, number, names)
        self.rows_sql = " UNION ALL ".join(
            f"SELECT employee_id, {columns} FROM {q}.{table}"
            f" WHERE employee_id = ANY($1::text[]){' AND NOT revoked' if tombstones else ''}"
            for table, columns, tombstones in _COUNTED
        )
        #: the main query of a segment's statement (`segment`, whose data-modifying `WITH`
        #: queries `w_<table>` return the rows they wrote): those rows before the segment,
        #: `written` NULL, then each row written, `written` false for a tombstone
        self.segment_sql = " UNION ALL ".join(
            [
                *(
                    f"SELECT employee_id, {columns}, NULL::bool AS written FROM {q}.{table}"
                    f" WHERE employee_id = ANY($1::text[]){' AND NOT revoked' if tombstones else ''}"
                    for table, columns, tombstones in _COUNTED
                ),
                *(
                    f"SELECT employee_id, {columns}, {'NOT revoked' if tombstones else 'true'}"
                    f" FROM w_{table}"
                    for table, columns, tombstones in _COUNTED
                ),
            ]
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

    async def lock(self, conn: asyncpg.Connection) -> None:
        """Take this read model's turn (held to COMMIT); before the rows are first read."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", self._lock_key)

    async def rows(
        self, conn: asyncpg.Connection, employees: Sequence[str]
    ) -> dict[str, list[Row]]:
        """The rows of `employees` now, per employee (one statement)."""
        return by_employee(await conn.fetch(self.rows_sql, list(employees)))

    def changes(self, found: Sequence[asyncpg.Record]) -> PendingCounts:
        """The count changes of a segment from what its statement's main query returned
        (`segment_sql`, every round in order): each employee whose rows it wrote, from their
        rows before to those rows with each written row put in (a tombstone taken out) in
        the order written. The same rows a read after the segment gets, without a statement
        of its own; an employee whose rows were not written costs nothing."""
        before: dict[str, list[Row]] = {}
        written: dict[str, list[tuple[Row, bool]]] = {}
        for r in found:
            names = None if r[5] is None else tuple(r[5])
            row = (r[1], r[2], r[3], r[4], names)
            if r[6] is None:
                before.setdefault(r[0], []).append(row)
            else:
                written.setdefault(r[0], []).append((row, r[6]))
        pending = PendingCounts()
        for employee, rows in written.items():
            old = before.get(employee, [])
            self.add(pending, employee, old, rows_after(old, rows))
        return pending

    def add(
        self, pending: PendingCounts, employee: str, before: Sequence[Row], after: Sequence[Row]
    ) -> None:
        """Add to `pending` what replacing the employee's rows `before` by `after` does.

        The same sums as `placement_changes` and `membership_changes` of the two (after minus
        before), added one timeline at a time: the zeros where they cancel are left to
        `apply`, which writes only non-zero changes. A timeline whose rows are the same before
        and after (a skill acquired moves no placement; a level, no membership) cancels to
        nothing and is not walked. Rows are unique (each holds its table's key), so sets
        compare them."""
        changed = {row[0] for row in set(before).symmetric_difference(after)}
        for rows, sign in ((after, 1), (before, -1)):
            if not rows:
                continue
            if not changed.isdisjoint(_PLACED):
                placed = pending.placed
                for change, n in placement_steps(rows):
                    placed[change] = placed.get(change, 0) + sign * n
            if not changed.isdisjoint(_MEMBERS):
                members = pending.members
                member = _member(employee, rows)
                for (day, names, skills), n in membership_changes_of(member).items():
                    key = (day, " ".join(names), " ".join(skills))
                    members[key] = members.get(key, 0) + sign * n

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


def by_employee(records: Sequence[asyncpg.Record]) -> dict[str, list[Row]]:
    """Rows read by `rows_sql`, per employee (a list of names as a tuple, so rows compare)."""
    out: dict[str, list[Row]] = {}
    for r in records:
        names = None if r[5] is None else tuple(r[5])
        out.setdefault(r[0], []).append((r[1], r[2], r[3], r[4], names))
    return out


def rows_after(before: Sequence[Row], written: Sequence[tuple[Row, bool]]) -> list[Row]:
    """The rows `before` with each row of `written` in order: it replaces the row of its key
    (a table's conflict target), or, not kept (a tombstone), removes it."""
    now = {(row[0], *(row[i] for i in _KEY[row[0]])): row for row in before}
    for row, kept in written:
        key = (row[0], *(row[i] for i in _KEY[row[0]]))
        if kept:
            now[key] = row
        else:
            now.pop(key, None)
    return list(now.values())


def placement_steps(rows: Sequence[Row]) -> list[tuple[Change, int]]:
    """The count changes the employee of `rows` contributes, as (change, ±1) pairs: what
    `domain.placements.changes_of` gives of their `Standing` (`domain.standings` assembles
    it from the same rows; none for an employee with only skills), in one sweep of the days.

    Each handler write walks two timelines per counted employee, so this is hot: the
    `Standing` is never built, and the day's department, highest level and employment are
    carried forward as the sorted records and levels are passed (tests check it against
    `domain.placements.changes_of`)."""
    found = _timeline_rows(rows)
    if found is None:
        return []
    placed, certified, left_on = found
    days = {BEGINNING, *(day for day, _ in placed), *(day for day, _ in certified)}
    if left_on is not None:
        days.add(left_on)
    # before its first record an employee is where the earliest one places them
    department = placed[0][1] if placed else UNKNOWN_DEPARTMENT
    highest = r = c = 0
    out: list[tuple[Change, int]] = []
    previous: Placement | None = None
    for day in sorted(days):
        while r < len(placed) and placed[r][0] <= day:
            department = placed[r][1]
            r += 1
        while c < len(certified) and certified[c][0] <= day:
            highest = max(highest, certified[c][1])
            c += 1
        placement = (department, highest, left_on is None or left_on > day)
        if placement == previous:
            continue
        out.append(((day, *placement), 1))
        if previous is not None:
            out.append(((day, *previous), -1))
        previous = placement
    return out


def _timeline_rows(
    rows: Sequence[Row],
) -> tuple[list[tuple[dt.date, str]], list[tuple[dt.date, int]], dt.date | None] | None:
    """What `assemble_standings` takes of `rows`: the dated departments that place the
    employee (records, else nominations from April 1 of their year, else the departments
    levels name), sorted; each level certified as (certified_on, level), sorted; `left_on`.
    None when no row makes a standing (only skills, or none)."""
    records: list[tuple[dt.date, str]] = []
    nominated: list[tuple[dt.date, str]] = []
    level_named: list[tuple[dt.date, str]] = []
    levels: dict[int, dt.date] = {}
    left_on: dt.date | None = None
    known = False
    for kind, day, code, number, _ in rows:
        if kind == "r":
            records.append((day, code))
        elif kind == "l":
            levels[number] = day
            if code is not None:
                level_named.append((day, code))
        elif kind == "n":
            nominated.append((fiscal_year_start(number), code))
        elif kind == "d":
            left_on = day
        else:
            continue
        known = True
    if not known:
        return None
    certified = sorted((on, n) for n, on in levels.items())
    return sorted(records or nominated or level_named), certified, left_on


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

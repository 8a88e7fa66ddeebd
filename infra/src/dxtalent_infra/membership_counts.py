"""The membership count tables of a read model, as reporting and certification both keep them.

`membership_days(day, categories, skills, n)`: on `day`, `n` more employees (negative: fewer)
are members with those categories (space-separated codes of the record in force; codes never
hold a space) and those skills held; `membership_years` the same summed per fiscal year.
What the counts mean, and how an employee's changes are computed, is
`dxtalent_contracts.memberships` (pure); this module is their SQL: the tables, the service
role's rights on them, the sums on a day and the addition of changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import asyncpg

from dxtalent_contracts.fiscal import fiscal_year_of, fiscal_year_start, yearly
from dxtalent_contracts.memberships import MembershipChange
from dxtalent_infra.eventstore import Write
from dxtalent_infra.migrations import Privilege, quote_ident

#: the tables (SQL for a `Migration`: `{schema}` is the read model's schema)
MEMBERSHIP_TABLES = """
    CREATE TABLE {schema}.membership_days (
        day date NOT NULL,
        categories text NOT NULL,
        skills text NOT NULL,
        n int NOT NULL,
        PRIMARY KEY (day, categories, skills)
    );
    CREATE TABLE {schema}.membership_years (
        fiscal_year int NOT NULL,
        categories text NOT NULL,
        skills text NOT NULL,
        n int NOT NULL,
        PRIMARY KEY (fiscal_year, categories, skills)
    );
"""

#: what the service role may do to them: rows are added to and updated, never deleted
MEMBERSHIP_PRIVILEGES: tuple[Privilege, ...] = tuple(
    Privilege(table, ("SELECT", "INSERT", "UPDATE"))
    for table in ("membership_days", "membership_years")
)

Membership = tuple[tuple[str, ...], tuple[str, ...], int]  # categories, skills, employees


class MembershipCounts:
    """The membership counts of the read model of `schema`: read on a day, add changes."""

    def __init__(self, schema: str) -> None:
        q = quote_ident(schema)
        self._on = f"""
            SELECT categories, skills, sum(n)::int FROM (
              SELECT categories, skills, n FROM {q}.membership_years WHERE fiscal_year < $1
              UNION ALL
              SELECT categories, skills, n FROM {q}.membership_days
              WHERE day BETWEEN $2 AND $3) changes
            GROUP BY categories, skills HAVING sum(n) <> 0"""
        # both tables in one statement (one round trip): the days as a data-modifying CTE,
        # each table's rows in key order
        upsert = (
            "INSERT INTO {q}.{table} AS c ({key}, categories, skills, n)"
            " SELECT * FROM unnest(${a}::{kind}[], ${b}::text[], ${c}::text[], ${d}::int[])"
            " ON CONFLICT ({key}, categories, skills) DO UPDATE SET n = c.n + EXCLUDED.n"
        )
        days = upsert.format(
            q=q, table="membership_days", key="day", kind="date", a=1, b=2, c=3, d=4
        )
        years = upsert.format(
            q=q, table="membership_years", key="fiscal_year", kind="int", a=5, b=6, c=7, d=8
        )
        self._add = f"WITH days AS ({days}) {years}"
        # the same two upserts, each with parameters $1..$4 of its own (`writes`)
        self._writes = tuple(
            upsert.format(q=q, table=table, key=key, kind=kind, a=1, b=2, c=3, d=4)
            for table, key, kind in (
                ("membership_days", "day", "date"),
                ("membership_years", "fiscal_year", "int"),
            )
        )

    async def on(self, conn: asyncpg.Connection, day: dt.date) -> list[Membership]:
        """Per membership, the employees in it on `day` (one statement: the yearly sums of the
        fiscal years before `day`'s, then the daily changes from April 1 of its year to `day`)."""
        year = fiscal_year_of(day)
        rows = await conn.fetch(self._on, year, fiscal_year_start(year), day)
        return [(tuple(r[0].split()), tuple(r[1].split()), r[2]) for r in rows]

    async def add(self, conn: asyncpg.Connection, changes: Mapping[MembershipChange, int]) -> None:
        """Add `changes` to the days and to their fiscal years: one statement, each table's rows
        in key order. Which table's rows it locks first is PostgreSQL's choice, so writers
        that may add at once take a turn first (certification's handler does, see
        `dxtalent_certification.memberships.lock_key`). Nothing when nothing changed."""
        columns = _columns(changes)
        if columns is not None:
            await conn.execute(self._add, *columns)

    def writes(self, changes: Mapping[MembershipChange, int]) -> list[Write]:
        """What `add` does, as the two upserts (days, then years) for a caller that sends them
        with other statements (`PostgresEventStore.append_many(along=...)`); none when nothing
        changed."""
        columns = _columns(changes)
        if columns is None:
            return []
        return [
            Write(self._writes[0], tuple(columns[:4])),
            Write(self._writes[1], tuple(columns[4:])),
        ]


def _columns(changes: Mapping[MembershipChange, int]) -> list[list[object]] | None:
    """The days' and the fiscal years' rows as eight arrays (four each, in key order);
    None when nothing changed."""
    daily = {
        (day, " ".join(named), " ".join(skills)): n
        for (day, named, skills), n in changes.items()
        if n
    }
    if not daily:
        return None
    columns: list[list[object]] = [[], [], [], [], [], [], [], []]
    for offset, rows in (
        (0, sorted(daily.items())),
        (4, list(yearly(daily).items())),
    ):
        for (key, named, skills), n in rows:
            for column, value in zip(
                columns[offset : offset + 4], (key, named, skills, n), strict=True
            ):
                column.append(value)
    return columns

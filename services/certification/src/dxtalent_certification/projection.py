"""`PostgresEmployeeProjection`: each employee's facts and certification state, one row each.

`{schema}.employees(employee_id, facts, state, updated_at)` is written by the consumer's
handler inside its batch transaction, together with the inbox claim and the certification
events it appends, so the row, the events and "this message was applied" commit as one.
`facts` is what the rules read, `state` what they last concluded (see `codec`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg

from dxtalent_certification.codec import (
    facts_from_json,
    facts_to_json,
    state_from_json,
    state_to_json,
)
from dxtalent_certification.domain.facts import EmployeeFacts
from dxtalent_certification.domain.state import CertificationState
from dxtalent_infra.migrations import Migration, quote_ident

COMPONENT = "projection"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "employees: facts and certification state per employee",
        """
        CREATE TABLE {schema}.employees (
            employee_id text PRIMARY KEY,
            facts jsonb NOT NULL,
            state jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
)


class ConcurrentInsertError(Exception):
    """Another transaction created the employee's row after this one found none.

    Raised so the consumer retries the message: on the next attempt the row exists and is
    locked before it is read, so no fact is lost.
    """

    def __init__(self, employee_id: str) -> None:
        super().__init__(f"employee {employee_id!r} was created concurrently; retry the message")
        self.employee_id = employee_id


@dataclass(frozen=True, slots=True)
class EmployeeRow:
    """One employee's facts and state, as stored."""

    facts: EmployeeFacts
    state: CertificationState


class PostgresEmployeeProjection:
    """The `employees` table of one schema: lock and read, write, query."""

    def __init__(self, schema: str) -> None:
        t = f"{quote_ident(schema)}.employees"
        self._get = f"SELECT facts::text, state::text FROM {t} WHERE employee_id = $1"
        self._all = f"SELECT facts::text, state::text FROM {t} ORDER BY employee_id"
        self._lock_many = (
            f"SELECT employee_id, facts::text, state::text FROM {t}"
            " WHERE employee_id = ANY($1::text[]) ORDER BY employee_id FOR UPDATE"
        )
        self._update_many = (
            f"UPDATE {t} AS e SET facts = u.facts::jsonb, state = u.state::jsonb, updated_at = now()"
            " FROM unnest($1::text[], $2::text[], $3::text[]) AS u(employee_id, facts, state)"
            " WHERE e.employee_id = u.employee_id"
        )
        self._insert_many = (
            f"INSERT INTO {t} (employee_id, facts, state)"
            " SELECT u.employee_id, u.facts::jsonb, u.state::jsonb"
            " FROM unnest($1::text[], $2::text[], $3::text[]) AS u(employee_id, facts, state)"
            " ON CONFLICT (employee_id) DO NOTHING RETURNING employee_id"
        )

    async def lock(self, conn: asyncpg.Connection, employee_id: str) -> EmployeeRow | None:
        """The employee's row, locked until the caller's transaction ends; None when new."""
        return (await self.lock_many(conn, [employee_id])).get(employee_id)

    async def get(self, conn: asyncpg.Connection, employee_id: str) -> EmployeeRow | None:
        """The employee's row as last committed, without locking; None when unknown."""
        return _row(await conn.fetchrow(self._get, employee_id))

    async def save(
        self,
        conn: asyncpg.Connection,
        facts: EmployeeFacts,
        state: CertificationState,
        *,
        existed: bool,
    ) -> None:
        """Write the row; `existed` says whether `lock` found (and so locked) it (see
        `save_many`)."""
        await self.save_many(conn, [(facts, state, existed)])

    async def lock_many(
        self, conn: asyncpg.Connection, employee_ids: Sequence[str]
    ) -> dict[str, EmployeeRow]:
        """The rows of several employees, locked in id order (no deadlock between replicas);
        employees without a row are absent."""
        records = await conn.fetch(self._lock_many, sorted(set(employee_ids)))
        return {r[0]: EmployeeRow(facts_from_json(r[1]), state_from_json(r[2])) for r in records}

    async def save_many(
        self,
        conn: asyncpg.Connection,
        rows: Sequence[tuple[EmployeeFacts, CertificationState, bool]],
    ) -> None:
        """Write several rows in two statements; each `bool` says whether `lock_many` found it.
        A new row inserted meanwhile by another transaction raises `ConcurrentInsertError`."""
        for existed in (True, False):
            chosen = [(f, st) for f, st, e in rows if e is existed]
            if not chosen:
                continue
            args = (
                [f.employee_id for f, _ in chosen],
                [facts_to_json(f) for f, _ in chosen],
                [state_to_json(st) for _, st in chosen],
            )
            if existed:
                await conn.execute(self._update_many, *args)
                continue
            inserted = {r[0] for r in await conn.fetch(self._insert_many, *args)}
            for f, _ in chosen:
                if f.employee_id not in inserted:
                    raise ConcurrentInsertError(f.employee_id)

    async def all(self, conn: asyncpg.Connection) -> AsyncIterator[EmployeeRow]:
        """Every employee's row, by employee id (run inside a transaction: it uses a cursor)."""
        async for record in conn.cursor(self._all, prefetch=500):
            row = _row(record)
            assert row is not None
            yield row


def _row(record: asyncpg.Record | None) -> EmployeeRow | None:
    if record is None:
        return None
    return EmployeeRow(facts_from_json(record[0]), state_from_json(record[1]))

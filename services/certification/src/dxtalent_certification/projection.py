"""`PostgresEmployeeProjection`: each employee's facts and certification state, one row each.

`{schema}.employees(employee_id, facts, state, sent, updated_at)` is written by the consumer's
handler inside its batch transaction, together with the inbox claim and the certification
events it appends, so the row, the events and "this message was applied" commit as one.
`facts` is what the rules read, `state` what they last concluded, `sent` the last event sent
per level and skill, which corrections supersede (see `codec` and `domain.corrections`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from dxtalent_certification.codec import (
    facts_and_doc_from_json,
    facts_to_json,
    facts_to_json_after,
    ledger_from_json,
    ledger_to_json,
    state_from_json,
    state_to_json,
)
from dxtalent_certification.domain.corrections import SentLedger
from dxtalent_certification.domain.facts import EmployeeFacts
from dxtalent_certification.domain.state import CertificationState
from dxtalent_infra.eventstore import Write
from dxtalent_infra.migrations import Migration, Privilege, quote_ident

COMPONENT = "projection"

#: Per employee and key, the last certification event of a store if it certifies: what the
#: `sent` ledger holds (see `domain.corrections`), as CTEs ending in `ledgers(employee_id,
#: sent)`. `{events}` is the store's events table.
LEDGERS_FROM_EVENTS = """
    WITH keyed AS (
        SELECT data->>'employee_id' AS employee_id, event_id, event_type, data, position,
            CASE WHEN event_type LIKE '%.Level%' THEN 'level:' || (data->>'level')
                ELSE 'skill:' || (data->>'skill') END AS key
        FROM {events}
        WHERE event_type IN ('dxtalent.certification.LevelCertified.v1',
            'dxtalent.certification.LevelRevoked.v1', 'dxtalent.certification.SkillAcquired.v1',
            'dxtalent.certification.SkillRevoked.v1')
    ), last AS (
        SELECT DISTINCT ON (employee_id, key) * FROM keyed
        ORDER BY employee_id, key, position DESC
    ), ledgers AS (
        SELECT employee_id, jsonb_build_object('v', 1, 'sent', jsonb_object_agg(
            key, jsonb_build_object('id', event_id, 'data', data - 'supersedes'))) AS sent
        FROM last
        WHERE event_type IN ('dxtalent.certification.LevelCertified.v1',
            'dxtalent.certification.SkillAcquired.v1')
        GROUP BY employee_id
    )"""

#: Rows written before the ledger existed get it from the certification event store of the same
#: schema (when there is one).
_LEDGER_FROM_STORE = (
    """
ALTER TABLE {schema}.employees ADD COLUMN sent jsonb NOT NULL DEFAULT '{"v":1,"sent":{}}';
DO $$
BEGIN
    IF to_regclass('{schema}.events') IS NULL THEN
        RETURN;
    END IF;
"""
    + LEDGERS_FROM_EVENTS.replace("{events}", "{schema}.events")
    + """
    UPDATE {schema}.employees AS e SET sent = l.sent
    FROM ledgers AS l WHERE e.employee_id = l.employee_id;
END $$;
"""
)

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
    Migration(
        2,
        "employees.sent: the last LevelCertified / SkillAcquired sent per key, from the store",
        _LEDGER_FROM_STORE,
    ),
)

#: The service role's rights (granted by the migration role, see `dxtalent_infra.migrations`):
#: read, lock (`FOR UPDATE` needs UPDATE), insert and update employees; never delete.
PRIVILEGES: tuple[Privilege, ...] = (Privilege("employees", ("SELECT", "INSERT", "UPDATE")),)


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
    """One employee's facts, state and sent ledger, as stored. `facts_doc` is the facts'
    document as read (None for a row not read), not part of the row's value: writing the row
    after a fact or two more encodes only those (`codec.facts_to_json_after`)."""

    facts: EmployeeFacts
    state: CertificationState
    sent: SentLedger
    facts_doc: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def employee_id(self) -> str:
        return self.facts.employee_id


class PostgresEmployeeProjection:
    """The `employees` table of one schema: lock and read, write, query."""

    def __init__(self, schema: str) -> None:
        t = f"{quote_ident(schema)}.employees"
        columns = "facts::text, state::text, sent::text"
        self._get = f"SELECT {columns} FROM {t} WHERE employee_id = $1"
        self._all = f"SELECT {columns} FROM {t} ORDER BY employee_id"
        self._lock_many = (
            f"SELECT {columns} FROM {t}"
            " WHERE employee_id = ANY($1::text[]) ORDER BY employee_id FOR UPDATE"
        )
        # the same, first taking the transaction-level advisory lock $2: an uncorrelated
        # sub-select is a one-time filter, evaluated once before the first row is read (even
        # when none matches), so before any row lock
        self._lock_many_after_turn = (
            f"SELECT {columns} FROM {t} WHERE employee_id = ANY($1::text[])"
            " AND (SELECT pg_advisory_xact_lock($2::bigint)) IS NOT NULL"
            " ORDER BY employee_id FOR UPDATE"
        )
        rows = (
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
            " AS u(employee_id, facts, state, sent)"
        )
        # a NULL state or sent keeps the stored one (`save_many`'s `found`)
        self._update_many = (
            f"UPDATE {t} AS e SET facts = u.facts::jsonb,"
            " state = coalesce(u.state::jsonb, e.state),"
            f" sent = coalesce(u.sent::jsonb, e.sent), updated_at = now(){rows}"
            " WHERE e.employee_id = u.employee_id"
        )
        self._insert_many = (
            f"INSERT INTO {t} (employee_id, facts, state, sent)"
            f" SELECT u.employee_id, u.facts::jsonb, u.state::jsonb, u.sent::jsonb{rows}"
            " ON CONFLICT (employee_id) DO NOTHING RETURNING employee_id"
        )

    async def lock(self, conn: asyncpg.Connection, employee_id: str) -> EmployeeRow | None:
        """The employee's row, locked until the caller's transaction ends; None when new."""
        return (await self.lock_many(conn, [employee_id])).get(employee_id)

    async def get(self, conn: asyncpg.Connection, employee_id: str) -> EmployeeRow | None:
        """The employee's row as last committed, without locking; None when unknown."""
        record = await conn.fetchrow(self._get, employee_id)
        return None if record is None else _row(record)

    async def save(self, conn: asyncpg.Connection, row: EmployeeRow, *, existed: bool) -> None:
        """Write the row; `existed` says whether `lock` found (and so locked) it (see
        `save_many`)."""
        await self.save_many(conn, [(row, existed)])

    async def lock_many(
        self, conn: asyncpg.Connection, employee_ids: Sequence[str], *, turn: int | None = None
    ) -> dict[str, EmployeeRow]:
        """The rows of several employees, locked in id order (no deadlock between replicas);
        employees without a row are absent. With `turn`, the same statement first waits for
        that transaction-level advisory lock (`memberships.lock_key`), before any row lock,
        without a round trip of its own."""
        ids = sorted(set(employee_ids))
        if turn is None:
            records = await conn.fetch(self._lock_many, ids)
        else:
            records = await conn.fetch(self._lock_many_after_turn, ids, turn)
        rows = [_row(r) for r in records]
        return {row.employee_id: row for row in rows}

    async def save_many(
        self,
        conn: asyncpg.Connection,
        rows: Sequence[tuple[EmployeeRow, bool]],
        *,
        found: Mapping[str, EmployeeRow] | None = None,
    ) -> None:
        """Write several rows in two statements; each `bool` says whether `lock_many` found it.
        A new row inserted meanwhile by another transaction raises `ConcurrentInsertError`.
        (`update_many` and `insert_many`, for a caller that sends the update with other
        statements.)"""
        update = self.update_many([row for row, e in rows if e], found=found)
        if update is not None:
            await conn.execute(update.sql, *update.args)
        await self.insert_many(conn, [row for row, e in rows if not e])

    def update_many(
        self, rows: Sequence[EmployeeRow], *, found: Mapping[str, EmployeeRow] | None = None
    ) -> Write | None:
        """The statement writing rows that `lock_many` found (and so locked); None for none.
        A `Write`, so it can travel with the append of the batch's events
        (`PostgresEventStore.append_many(along=...)`, decision 0296).

        `found` (what `lock_many` returned) spares work: a row's state or sent ledger that is
        the very object found there is unchanged, so it is neither encoded nor rewritten (a
        nomination, a completion granting nothing new)."""
        if not rows:
            return None
        before = found or {}
        was = [before.get(row.employee_id) for row in rows]
        return Write(self._update_many, self._columns(rows, was))

    async def insert_many(self, conn: asyncpg.Connection, rows: Sequence[EmployeeRow]) -> None:
        """Insert rows that `lock_many` did not find (one statement); a row another
        transaction inserted meanwhile raises `ConcurrentInsertError`."""
        if not rows:
            return
        args = self._columns(rows, [None] * len(rows))
        inserted = {r[0] for r in await conn.fetch(self._insert_many, *args)}
        for row in rows:
            if row.employee_id not in inserted:
                raise ConcurrentInsertError(row.employee_id)

    @staticmethod
    def _columns(
        rows: Sequence[EmployeeRow], was: Sequence[EmployeeRow | None]
    ) -> tuple[list[str], list[str], list[str | None], list[str | None]]:
        """The statements' four arrays: ids, facts, state and sent (NULL: as stored)."""
        return (
            [row.employee_id for row in rows],
            [_facts_json(row, old) for row, old in zip(rows, was, strict=True)],
            [
                None if old is not None and row.state is old.state else state_to_json(row.state)
                for row, old in zip(rows, was, strict=True)
            ],
            [
                None if old is not None and row.sent is old.sent else ledger_to_json(row.sent)
                for row, old in zip(rows, was, strict=True)
            ],
        )

    async def all(self, conn: asyncpg.Connection) -> AsyncIterator[EmployeeRow]:
        """Every employee's row, by employee id (run inside a transaction: it uses a cursor)."""
        async for record in conn.cursor(self._all, prefetch=500):
            yield _row(record)


def _row(record: asyncpg.Record) -> EmployeeRow:
    facts, doc = facts_and_doc_from_json(record[0])
    return EmployeeRow(facts, state_from_json(record[1]), ledger_from_json(record[2]), doc)


def _facts_json(row: EmployeeRow, old: EmployeeRow | None) -> str:
    """The facts of `row`, written over `old`'s (as read, when it was)."""
    if old is None or old.facts_doc is None:
        return facts_to_json(row.facts)
    return facts_to_json_after(row.facts, old.facts, old.facts_doc)

"""The `employees` read model on real PostgreSQL: rows round-trip, a row created by a
concurrent transaction is never overwritten by one that did not see it, and rows written
before the sent ledger existed get it from the event store."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import cast

import asyncpg
import pytest

from dxtalent_certification.codec import facts_to_json, ledger_from_json, state_to_json
from dxtalent_certification.domain.corrections import SentEvent, SentLedger, sent_data
from dxtalent_certification.domain.decide import DomainChange
from dxtalent_certification.domain.evaluate import evaluate
from dxtalent_certification.domain.facts import Completion, EmployeeFacts, Nomination
from dxtalent_certification.domain.state import CertificationState
from dxtalent_certification.handler import EVENT_TYPE_OF
from dxtalent_certification.projection import (
    COMPONENT,
    MIGRATIONS,
    ConcurrentInsertError,
    EmployeeRow,
    PostgresEmployeeProjection,
)
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.events import LevelCertified, LevelRevoked, SkillAcquired, SkillRevoked
from dxtalent_infra.eventstore import PostgresEventStore
from dxtalent_infra.migrations import migrate
from dxtalent_infra.records import NewEvent

E = "E000042"


@pytest.fixture
async def pool(database_url: str, db_schema: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=2, max_size=3) as p:
        async with p.acquire() as conn:
            await migrate(cast(asyncpg.Connection, conn), db_schema, COMPONENT, MIGRATIONS)
        yield p


def some_facts() -> EmployeeFacts:
    return EmployeeFacts.of(
        E,
        [
            Nomination("nom-1", E, 2025, "D-1"),
            Completion("cmp-1", E, "DX-101", dt.date(2025, 6, 1)),
        ],
    )


def some_row() -> EmployeeRow:
    facts = some_facts()
    sent = SentLedger({"skill:dx-basics": SentEvent("ev-1", {"skill": "dx-basics", "n": [1]})})
    return EmployeeRow(facts, evaluate(load_catalog(), facts), sent)


def empty_row(facts: EmployeeFacts) -> EmployeeRow:
    return EmployeeRow(facts, CertificationState.empty(E), SentLedger.empty())


async def test_a_saved_row_reads_back(pool: asyncpg.Pool, db_schema: str) -> None:
    """save (new), then lock and get, return the same facts, state and sent ledger."""
    projection = PostgresEmployeeProjection(db_schema)
    row = some_row()
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        async with conn.transaction():
            assert await projection.lock(conn, E) is None
            await projection.save(conn, row, existed=False)
        async with conn.transaction():
            locked = await projection.lock(conn, E)
        got = await projection.get(conn, E)
    assert got == locked == row


async def test_a_state_and_ledger_found_unchanged_are_kept_as_stored(
    pool: asyncpg.Pool, db_schema: str
) -> None:
    """save_many with `found`: a state or ledger that is the very object locked is not
    rewritten (NULL keeps the stored value), one that changed is; either way the row reads
    back as the row saved."""
    projection = PostgresEmployeeProjection(db_schema)
    row = some_row()
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        async with conn.transaction():
            await projection.save(conn, row, existed=False)
        for change in ("facts only", "state and ledger"):
            async with conn.transaction():
                found = await projection.lock_many(conn, [E])
                locked = found[E]
                facts = locked.facts.with_fact(Nomination(f"nom-{change}", E, 2026, "D-2"))
                if change == "facts only":
                    saved = EmployeeRow(facts, locked.state, locked.sent)
                else:
                    saved = EmployeeRow(facts, CertificationState.empty(E), SentLedger.empty())
                await projection.save_many(conn, [(saved, True)], found=found)
            assert await projection.get(conn, E) == saved


async def test_lock_many_takes_the_turn_first_even_when_no_row_matches(
    pool: asyncpg.Pool, db_schema: str
) -> None:
    """lock_many with `turn` holds that advisory lock to the end of the transaction (no row
    or some), and another transaction's lock_many with the same turn waits for it."""
    projection = PostgresEmployeeProjection(db_schema)
    turn = 424242
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    async with pool.acquire() as first_proxy, pool.acquire() as second_proxy:
        first = cast(asyncpg.Connection, first_proxy)
        second = cast(asyncpg.Connection, second_proxy)
        async with first.transaction():
            await projection.save(first, some_row(), existed=False)
        tx = first.transaction()
        await tx.start()
        assert await projection.lock_many(first, ["E-nobody"], turn=turn) == {}
        assert await first.fetchval(held) == 1
        async with second.transaction():
            await second.execute("SET LOCAL lock_timeout = '200ms'")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await projection.lock_many(second, [E], turn=turn)
        await tx.commit()
        async with second.transaction():
            assert set(await projection.lock_many(second, [E], turn=turn)) == {E}
            assert await second.fetchval(held) == 1
        assert await second.fetchval(held) == 0


async def test_a_row_created_concurrently_is_not_overwritten(
    pool: asyncpg.Pool, db_schema: str
) -> None:
    """Both transactions found no row; the one that commits second is refused (to retry)."""
    projection = PostgresEmployeeProjection(db_schema)
    async with pool.acquire() as first_proxy, pool.acquire() as second_proxy:
        first = cast(asyncpg.Connection, first_proxy)
        second = cast(asyncpg.Connection, second_proxy)
        tx = first.transaction()
        await tx.start()
        assert await projection.lock(first, E) is None
        async with second.transaction():
            assert await projection.lock(second, E) is None
            await projection.save(second, empty_row(some_facts()), existed=False)
        with pytest.raises(ConcurrentInsertError):
            await projection.save(first, empty_row(EmployeeFacts(E)), existed=False)
        await tx.rollback()
        row = await projection.get(first, E)
    assert row is not None
    assert row.facts == some_facts()


def stored(event_id: str, change: DomainChange) -> NewEvent:
    """A certification event as recorded before `supersedes` existed."""
    return NewEvent(
        event_id=event_id,
        event_type=EVENT_TYPE_OF[type(change)],
        data=change.model_dump(mode="json", exclude={"supersedes"}),
        occurred_at=dt.datetime(2025, 7, 1, tzinfo=dt.UTC),
        subject=change.employee_id,
    )


async def test_rows_written_before_the_ledger_get_it_from_the_event_store(
    database_url: str, db_schema: str
) -> None:
    """Migration 2 fills `sent` per employee and key with the last event, unless it revokes."""
    acquired = SkillAcquired(
        employee_id=E,
        skill="dx-basics",
        course_id="DX-101",
        acquired_on=dt.date(2025, 6, 1),
        evidence_event_id="cmp-1",
    )
    later = acquired.model_copy(update={"skill": "ict-basics", "course_id": "ICT-101"})
    level = LevelCertified(
        employee_id=E,
        level=1,
        fiscal_year=2025,
        certified_on=dt.date(2025, 7, 1),
        department_code="D-1",
        evidence=[],
        policy_version="p-1",
    )
    redated = level.model_copy(update={"certified_on": dt.date(2025, 6, 20)})
    history = [
        stored("ev-1", acquired),
        stored("ev-2", level),
        stored("ev-3", redated),
        stored("ev-4", later),
        stored("ev-5", SkillRevoked(employee_id=E, skill="ict-basics", reason="voided")),
        stored("ev-6", level.model_copy(update={"level": 2})),
        stored("ev-7", LevelRevoked(employee_id=E, level=2, reason="lost", caused_by="v-1")),
    ]
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        store = PostgresEventStore(pool, db_schema)
        await store.migrate()
        async with pool.acquire() as proxy:
            conn = cast(asyncpg.Connection, proxy)
            await migrate(conn, db_schema, COMPONENT, MIGRATIONS[:1])
            insert = f'INSERT INTO "{db_schema}".employees VALUES ($1, $2, $3)'
            for who in (E, "E-QUIET"):
                empty = empty_row(EmployeeFacts(who))
                await conn.execute(
                    insert, who, facts_to_json(empty.facts), state_to_json(empty.state)
                )
            await store.append(f"employee-{E}", None, history)
            await migrate(conn, db_schema, COMPONENT, MIGRATIONS)
            sent = {
                r[0]: ledger_from_json(r[1])
                for r in await conn.fetch(
                    f'SELECT employee_id, sent::text FROM "{db_schema}".employees'
                )
            }

    assert sent["E-QUIET"] == SentLedger.empty()
    assert sent[E] == SentLedger(
        {
            "level:1": SentEvent("ev-3", sent_data(redated)),
            "skill:dx-basics": SentEvent("ev-1", sent_data(acquired)),
        }
    )

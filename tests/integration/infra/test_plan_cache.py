"""The services' PostgreSQL sessions keep index look-ups as their tables grow (decision 0255).

asyncpg prepares every statement, and PostgreSQL caches a generic plan for a prepared
statement after five executions (`plan_cache_mode=auto`). A generic plan made while a table
was small and freshly analysed reads it sequentially, and stays cached until the next ANALYZE
of the table, however much it has grown meanwhile. The event store's look-ups of a batch
(`existing_event_ids`, and `lock_streams` of `append_many`) are run here the way a young
system runs them: many times on tiny analysed tables, then once more after the tables grew
to thousands of rows. With the services' session settings they read no row sequentially;
with `auto` (the control) the cached generic plans do.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import cast

import asyncpg
import pytest

from dxtalent_infra.eventstore import PostgresEventStore
from dxtalent_infra.records import NewEvent
from dxtalent_infra.runtime import pool_server_settings
from dxtalent_infra.servers import EmbeddedPostgres

#: autovacuum analyses a table first once about 50 rows were written
SMALL = 60
GROWN = 20_000


def event(subject: str) -> NewEvent:
    return NewEvent(
        event_id=str(uuid.uuid4()),
        event_type="dxtalent.enrollment.CourseCompleted.v1",
        data={"course_id": "DX-101"},
        occurred_at=dt.datetime(2025, 6, 12, 9, 30, tzinfo=dt.UTC),
        subject=subject,
        causation_id=None,
        correlation_id=None,
    )


#: the test's schema, on a server of its own
SCHEMA = "plan_cache"


@pytest.fixture
async def one_session(own_postgres: EmbeddedPostgres) -> AsyncIterator[asyncpg.Pool]:
    """One connection with the services' session settings (its prepared statements and
    their cached plans are the ones measured), on a server of the test's own: DDL in other
    sessions (tests migrating their schemas beside it) can overflow PostgreSQL's shared
    invalidation queue, which drops every cached plan, and the control then read nothing
    sequentially."""
    async with asyncpg.create_pool(
        own_postgres.url, min_size=1, max_size=1, server_settings=pool_server_settings("test")
    ) as p:
        yield p


async def _seq_rows_read(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
    """Rows this session read sequentially and has not yet reported (earlier transactions'
    counts included: compare two readings of one transaction)."""
    rows = await conn.fetch(
        "SELECT relname, seq_tup_read FROM pg_stat_xact_user_tables"
        " WHERE schemaname = $1 AND relname IN ('events', 'streams')",
        schema,
    )
    return {r["relname"]: r["seq_tup_read"] for r in rows}


@pytest.mark.parametrize(("mode", "sequential"), [(None, False), ("auto", True)])
async def test_batch_lookups_use_the_indexes_after_the_tables_grew(
    one_session: asyncpg.Pool, mode: str | None, sequential: bool
) -> None:
    db_schema = SCHEMA
    store = PostgresEventStore(one_session, db_schema)
    await store.migrate()
    async with one_session.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        # only the test's own ANALYZE: an autovacuum ANALYZE after the tables grew would end
        # the cached generic plans early
        for table in ("events", "streams"):
            await conn.execute(
                f'ALTER TABLE "{db_schema}".{table} SET (autovacuum_enabled = false)'
            )
        if mode is not None:
            await conn.execute(f"SET plan_cache_mode = {mode}")
        await store.append_many(
            [(f"employee-{i}", None, [event(str(i))]) for i in range(SMALL)], conn=conn
        )
        await conn.execute(f'ANALYZE "{db_schema}".events, "{db_schema}".streams')
        for n in range(10):  # past the five custom plans after which `auto` may go generic
            await store.existing_event_ids([str(uuid.uuid4()), str(n)], conn=conn)
            await store.append_many([(f"employee-{n}", None, [event(str(n))])], conn=conn)
        await store.append_many(
            [(f"grown-{i}", None, [event(str(i))]) for i in range(GROWN)], conn=conn
        )
        async with conn.transaction():
            before = await _seq_rows_read(conn, db_schema)
            await store.existing_event_ids([str(uuid.uuid4()) for _ in range(50)], conn=conn)
            await store.append_many(
                [(f"grown-{i}", None, [event(str(i))]) for i in range(0, GROWN, 400)], conn=conn
            )
            after = await _seq_rows_read(conn, db_schema)
    read = {table: after[table] - before.get(table, 0) for table in after}
    if sequential:
        assert read["events"] + read["streams"] >= GROWN
    else:
        assert read == {"events": 0, "streams": 0}

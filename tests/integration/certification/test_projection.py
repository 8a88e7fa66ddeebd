"""The `employees` read model on real PostgreSQL: rows round-trip, and a row created by a
concurrent transaction is never overwritten by one that did not see it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import cast

import asyncpg
import pytest

from dxtalent_certification.domain.evaluate import evaluate
from dxtalent_certification.domain.facts import Completion, EmployeeFacts, Nomination
from dxtalent_certification.domain.state import CertificationState
from dxtalent_certification.projection import (
    COMPONENT,
    MIGRATIONS,
    ConcurrentInsertError,
    PostgresEmployeeProjection,
)
from dxtalent_contracts.catalog import load_catalog
from dxtalent_infra.migrations import migrate

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


async def test_a_saved_row_reads_back(pool: asyncpg.Pool, db_schema: str) -> None:
    """save (new), then lock and get, return the same facts and state."""
    projection = PostgresEmployeeProjection(db_schema)
    facts = some_facts()
    state = evaluate(load_catalog(), facts)
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        async with conn.transaction():
            assert await projection.lock(conn, E) is None
            await projection.save(conn, facts, state, existed=False)
        async with conn.transaction():
            locked = await projection.lock(conn, E)
        got = await projection.get(conn, E)
    assert locked is not None
    assert got is not None
    assert (got.facts, got.state) == (locked.facts, locked.state) == (facts, state)


async def test_a_row_created_concurrently_is_not_overwritten(
    pool: asyncpg.Pool, db_schema: str
) -> None:
    """Both transactions found no row; the one that commits second is refused (to retry)."""
    projection = PostgresEmployeeProjection(db_schema)
    empty = CertificationState.empty(E)
    async with pool.acquire() as first_proxy, pool.acquire() as second_proxy:
        first = cast(asyncpg.Connection, first_proxy)
        second = cast(asyncpg.Connection, second_proxy)
        tx = first.transaction()
        await tx.start()
        assert await projection.lock(first, E) is None
        async with second.transaction():
            assert await projection.lock(second, E) is None
            await projection.save(second, some_facts(), empty, existed=False)
        with pytest.raises(ConcurrentInsertError):
            await projection.save(first, EmployeeFacts(E), empty, existed=False)
        await tx.rollback()
        row = await projection.get(first, E)
    assert row is not None
    assert row.facts == some_facts()

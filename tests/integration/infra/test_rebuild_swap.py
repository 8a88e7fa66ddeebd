"""The swaps of `dxtalent_infra.rebuild` against real PostgreSQL, as asyncpg clients see them:
statements prepared before a swap read and write the new tables after it, and a writer that
was waiting on the lock during the swap never writes into the retired tables."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from dxtalent_infra.rebuild import swap_schemas, swap_tables


@pytest.fixture
async def schemas(database_url: str, db_schema: str) -> AsyncIterator[tuple[str, str, str]]:
    """(live, new, retired) names; every one of them dropped afterwards."""
    names = (db_schema, f"{db_schema}_rebuild", f"{db_schema}_retired")
    yield names
    conn = await asyncpg.connect(database_url)
    try:
        for name in names:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


async def _tables(conn: asyncpg.Connection, schema: str, label: str) -> None:
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    for table in ("inbox", "levels"):
        await conn.execute(f'CREATE TABLE "{schema}".{table} (k text PRIMARY KEY, v text)')
        await conn.execute(f"INSERT INTO \"{schema}\".{table} VALUES ('origin', $1)", label)


Swap = Callable[[asyncpg.Connection, str, str, str], Awaitable[None]]


async def _by_tables(conn: asyncpg.Connection, live: str, new: str, retired: str) -> None:
    await swap_tables(conn, live, new, retired, ("inbox", "levels"))


@pytest.mark.parametrize("swap", [swap_schemas, _by_tables], ids=["schemas", "tables"])
async def test_prepared_statements_follow_the_swap_and_a_waiting_writer_misses_nothing(
    database_url: str, schemas: tuple[str, str, str], swap: Swap
) -> None:
    live, new, retired = schemas
    admin = await asyncpg.connect(database_url)
    reader = await asyncpg.connect(database_url)
    writer = await asyncpg.connect(database_url)
    try:
        await _tables(admin, live, "old")
        await _tables(admin, new, "new")
        # prepared (and cached by asyncpg) against the old tables, as a running service has them
        read = f'SELECT v FROM "{live}".levels WHERE k = $1'
        claim = f'INSERT INTO "{live}".inbox (k, v) VALUES ($1, $2)'
        assert await reader.fetchval(read, "origin") == "old"
        await writer.execute(claim, "before", "x")
        await admin.execute(f'DELETE FROM "{live}".inbox WHERE k = $1', "before")

        # the swap holds the live inbox, as the rebuild does; a writer's claim waits on it
        swapping = admin.transaction()
        await swapping.start()
        await admin.execute(f'LOCK TABLE "{live}".inbox IN EXCLUSIVE MODE')
        assert await reader.fetchval(read, "origin") == "old"  # readers go on meanwhile
        waiting = asyncio.create_task(_claim(writer, claim))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await swap(admin, live, new, retired)
        await swapping.commit()
        outcome = await waiting

        assert await reader.fetchval(read, "origin") == "new"
        retired_rows = await admin.fetchval(f'SELECT count(*) FROM "{retired}".inbox')
        assert retired_rows == 1, "nothing was written into the retired inbox"
        if outcome == "written":
            assert await admin.fetchval(f'SELECT v FROM "{live}".inbox WHERE k = $1', "late")
        else:  # refused by the fence: a consumer retries its batch, which now lands here
            assert outcome.startswith("CheckViolation")
            await _claim(writer, claim)
            assert await admin.fetchval(f'SELECT v FROM "{live}".inbox WHERE k = $1', "late")
        await writer.execute(claim, "after", "y")
        assert await admin.fetchval(f'SELECT count(*) FROM "{live}".inbox') == 3
    finally:
        for conn in (admin, reader, writer):
            await conn.close()


async def _claim(conn: asyncpg.Connection, claim: str) -> str:
    try:
        async with conn.transaction():
            await conn.execute(claim, "late", "z")
    except asyncpg.CheckViolationError as exc:
        return f"CheckViolation: {exc}"
    return "written"

"""Inbox retention on a real PostgreSQL: rows past the retention go, in small batches; a
redelivery inside the duplicate window still finds its row and is skipped (issue 11)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

import asyncpg
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from dxtalent_infra import inbox, inbox_retention
from dxtalent_infra.inbox import PostgresInbox
from dxtalent_infra.inbox_retention import InboxPruner
from dxtalent_infra.migrations import migrate, quote_ident
from dxtalent_infra.settings import Settings
from tests.support.polling import eventually
from tests.support.servers import unique_token


@contextlib.asynccontextmanager
async def _tx(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as proxy, proxy.transaction():
        yield cast(asyncpg.Connection, proxy)


async def _age(pool: asyncpg.Pool, schema: str, keys: list[str], seconds: float) -> None:
    """Pretend `keys` were applied `seconds` ago."""
    await pool.execute(
        f"UPDATE {quote_ident(schema)}.inbox SET processed_at = now() - make_interval(secs => $2)"
        " WHERE message_key = ANY($1::text[])",
        keys,
        seconds,
    )


async def test_pruning_keeps_the_duplicate_window_and_removes_rows_past_retention(
    pool: asyncpg.Pool, db_schema: str
) -> None:
    settings = Settings(duplicate_window_s=600, inbox_retention_s=3600)
    async with _tx(pool) as conn:
        await migrate(conn, db_schema, inbox.COMPONENT, inbox.MIGRATIONS)
        await migrate(conn, db_schema, inbox_retention.COMPONENT, inbox_retention.MIGRATIONS)
    box = PostgresInbox(db_schema, "durable-a", "DX_TEST")
    old = [f"old-{i}" for i in range(5)]
    recent = ["recent-1", "recent-2"]
    async with _tx(pool) as conn:
        await box.claim(conn, old + recent, list(range(1, 8)))
    await _age(pool, db_schema, old, settings.inbox_retention_s + 60)
    await _age(pool, db_schema, recent, settings.duplicate_window_s / 2)

    service = unique_token()
    pruner = InboxPruner(
        pool,
        db_schema,
        service=service,
        retention_s=settings.inbox_retention_s,
        interval_s=1,
        batch_size=2,  # three batches for five rows
    )
    assert await pruner.prune_once() == 5
    assert await pruner.prune_once() == 0
    counted = REGISTRY.get_sample_value("dxtalent_inbox_pruned_rows_total", {"service": service})
    assert counted == 5

    left = await pool.fetch(f"SELECT message_key FROM {quote_ident(db_schema)}.inbox")
    assert sorted(r["message_key"] for r in left) == recent
    async with _tx(pool) as conn:
        # a redelivery inside the window: recognised, nothing new to handle
        assert await box.claim(conn, recent, [6, 7]) == set()


async def test_the_pruner_runs_until_stopped(pool: asyncpg.Pool, db_schema: str) -> None:
    """The service runtime's loop: it prunes at once, then stops when asked."""
    async with _tx(pool) as conn:
        await migrate(conn, db_schema, inbox.COMPONENT, inbox.MIGRATIONS)
    box = PostgresInbox(db_schema, "durable-b", "DX_TEST")
    async with _tx(pool) as conn:
        await box.claim(conn, ["k"], [1])
    await _age(pool, db_schema, ["k"], 7200)
    pruner = InboxPruner(pool, db_schema, service=unique_token(), retention_s=3600, interval_s=60)
    task = asyncio.create_task(pruner.run())

    async def empty() -> bool:
        rows: int = await pool.fetchval(f"SELECT count(*) FROM {quote_ident(db_schema)}.inbox")
        return rows == 0

    await eventually(empty, "the pruner's first pass")
    await pruner.stop()
    await asyncio.wait_for(task, 10)


def test_a_retention_not_longer_than_the_duplicate_window_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be longer than the stream's duplicate window"):
        Settings(duplicate_window_s=600, inbox_retention_s=600)

"""The services' pools skip asyncpg's reset query on release (decision 0285): a connection goes
back to the pool without a server round trip unless our code marked it. These tests run our
code's paths on a services' pool (`runtime.connect_postgres`) and then look at every
connection of the pool from PostgreSQL's side: no LISTEN channel, no advisory lock, no
cursor, no temporary table, and every setting as it was when the connection was made."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import asyncpg
import pytest
import structlog
from nats.aio.client import Client

from dxtalent_infra import pool_reset
from dxtalent_infra.applier import BatchApplier
from dxtalent_infra.delivery import Delivery
from dxtalent_infra.eventstore import DuplicateEventError, PostgresEventStore
from dxtalent_infra.inbox import PostgresInbox
from dxtalent_infra.metrics import HANDLER_SECONDS
from dxtalent_infra.nats import connect_nats
from dxtalent_infra.outbox import OutboxRelay
from dxtalent_infra.records import NewEvent
from dxtalent_infra.runtime import connect_postgres
from dxtalent_infra.streams import ensure_streams
from dxtalent_infra.topology import Topology
from tests.support.polling import eventually

SIZE = 3
TYPE = "dxtalent.enrollment.CourseCompleted.v1"

Session = dict[str, Any]


def event(event_id: str | None = None) -> NewEvent:
    return NewEvent(
        event_id=event_id or f"ev-{uuid.uuid4()}",
        event_type=TYPE,
        data={"employee_id": "E000001", "skills": [], "fiscal_year": None},
        occurred_at=dt.datetime(2025, 6, 12, 0, 30, tzinfo=dt.UTC),
        subject="E000001",
        causation_id=None,
        correlation_id=None,
    )


async def session(conn: asyncpg.Connection) -> Session:
    """What a session carries from one use to the next, as the server sees it."""
    row = await conn.fetchrow(
        "SELECT array(SELECT pg_listening_channels() ORDER BY 1) AS listening,"
        " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        "  AND pid = pg_backend_pid()) AS advisory_locks,"
        " (SELECT count(*) FROM pg_cursors) AS cursors,"
        " (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())"
        "  AS temp_tables,"
        " array(SELECT name || '=' || setting FROM pg_settings ORDER BY name) AS settings"
    )
    assert row is not None
    return dict(row)


async def sessions(pool: asyncpg.Pool) -> dict[int, Session]:
    """Every connection of `pool` (all acquired at once, so each is a different one)."""
    async with contextlib.AsyncExitStack() as stack:
        conns = [
            cast(asyncpg.Connection, await stack.enter_async_context(pool.acquire()))
            for _ in range(SIZE)
        ]
        return {c.get_server_pid(): await session(c) for c in conns}


@pytest.fixture
async def service_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect_postgres(database_url, "test", size=SIZE)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def store(service_pool: asyncpg.Pool, db_schema: str) -> PostgresEventStore:
    s = PostgresEventStore(service_pool, db_schema)
    await s.migrate()
    return s


@pytest.fixture
async def nc(nats_url: str, topology: Topology) -> AsyncIterator[Client]:
    conn = await connect_nats(nats_url, name="test-pool-reset", reconnect_wait_s=0.2)
    await ensure_streams(conn.jetstream(), topology)
    yield conn
    await conn.close()


def relay_for(
    pool: asyncpg.Pool, schema: str, nc: Client, topology: Topology, **kwargs: Any
) -> OutboxRelay:
    return OutboxRelay(
        pool, schema, nc.jetstream(), topology, source="urn:test:enrollment", **kwargs
    )


def published(relay: OutboxRelay) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await relay.pending() == 0

    return check


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[None]:
    task = asyncio.create_task(relay.run())
    try:
        yield
    finally:
        await asyncio.wait_for(relay.stop(), 15)
        await task


class AppendingHandler:
    """A consumer's handler that appends one event per message inside the batch's
    transaction, and raises for the messages it is told to (the applier's savepoint path)."""

    def __init__(self, store: PostgresEventStore, failing: set[str]) -> None:
        self._store = store
        self._failing = failing

    async def __call__(self, conn: asyncpg.Connection, delivery: Delivery) -> None:
        if delivery.message_key in self._failing:
            raise ValueError(f"refused {delivery.message_key}")
        await self._store.append_new([(delivery.message_key, event())], conn=conn)

    async def handle_many(self, conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
        if any(d.message_key in self._failing for d in deliveries):
            raise ValueError("one at a time")
        await self._store.append_new([(d.message_key, event()) for d in deliveries], conn=conn)


def deliveries(n: int) -> list[Delivery]:
    now = dt.datetime.now(dt.UTC)
    return [Delivery("dx.facts.x", b"{}", {}, i + 1, 1, f"k-{i}", now) for i in range(n)]


async def test_connections_carry_no_session_state_after_our_paths(
    service_pool: asyncpg.Pool,
    store: PostgresEventStore,
    db_schema: str,
    nc: Client,
    topology: Topology,
) -> None:
    """Appends (one that fails on a duplicate id among them), a consumer batch with a failing
    message, the relay's batches and its LISTEN while it runs: afterwards every connection of
    the pool is as it was made."""
    made = await sessions(service_pool)
    duplicate = event()
    await store.append("E000001", None, [duplicate])
    await store.append_many([("E000002", None, [event()]), ("E000003", 0, [event()])])
    with pytest.raises(DuplicateEventError):
        await store.append("E000004", None, [duplicate])
    inbox = PostgresInbox(db_schema, "durable", "stream")
    async with service_pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        await inbox.migrate(conn)
        applier = BatchApplier(
            inbox,
            AppendingHandler(store, failing={"k-2"}),
            max_deliver=1,
            backoff=(),
            latency=HANDLER_SECONDS.labels("pool-reset-test"),
            log=structlog.get_logger(),
        )
        outcome = await applier.apply(conn, deliveries(5))
    assert outcome.applied == [0, 1, 3, 4]
    assert [d.index for d in outcome.dead] == [2]
    relay = relay_for(service_pool, db_schema, nc, topology, batch_size=2)
    assert await relay.drain_once() == 7
    async with running(relay):
        await store.append("E000005", None, [event()])
        await eventually(published(relay), "the relay published everything")
    assert await sessions(service_pool) == made


@pytest.mark.parametrize(
    "unlisten_fails",
    [
        False,
        # asyncpg warns that a listener is still registered: the failure simulated here
        pytest.param(True, marks=pytest.mark.filterwarnings("ignore:.*notification listener")),
    ],
)
async def test_the_relays_listener_stops_listening_when_it_goes_back(
    service_pool: asyncpg.Pool,
    store: PostgresEventStore,
    db_schema: str,
    nc: Client,
    topology: Topology,
    monkeypatch: pytest.MonkeyPatch,
    unlisten_fails: bool,
) -> None:
    """The relay LISTENs on a pooled connection while it runs (it wakes on an append long
    before its next poll); once it stopped, no connection of the pool listens, even when the
    relay could not UNLISTEN itself."""
    if unlisten_fails:

        async def fail(*_: object) -> None:
            raise asyncpg.InterfaceError("lost")

        monkeypatch.setattr(asyncpg.Connection, "remove_listener", fail)
    relay = relay_for(service_pool, db_schema, nc, topology, poll_interval=60.0)
    async with running(relay):
        await asyncio.sleep(0.3)  # drained the empty outbox, now asleep until notified
        await store.append("E000001", None, [event()])
        await eventually(published(relay), "the relay woke on NOTIFY and published")
    assert all(not s["listening"] for s in (await sessions(service_pool)).values())


async def test_a_marked_connection_gets_the_full_reset_and_an_unmarked_one_none(
    database_url: str,
) -> None:
    """The contract of `pool_reset`: state our code leaves on an unmarked connection stays
    (no reset query ran), a marked connection comes back as it was made."""
    pool = await connect_postgres(database_url, "test", size=1)
    try:
        async with pool.acquire() as proxy:
            made = await session(cast(asyncpg.Connection, proxy))
        for marked in (False, True):
            async with pool.acquire() as proxy:
                conn = cast(asyncpg.Connection, proxy)
                await conn.execute("SELECT pg_advisory_lock(285); LISTEN pool_reset_test")
                await conn.execute("SET work_mem = '7MB'")
                if marked:
                    pool_reset.needs_full_reset(conn)
            async with pool.acquire() as proxy:
                conn = cast(asyncpg.Connection, proxy)
                now = await session(conn)
                assert pool_reset.marked_for_full_reset(conn) is False
            if marked:
                assert now == made
            else:
                assert now["listening"] == ["pool_reset_test"]
                assert now["advisory_locks"] == 1
                assert "work_mem=7168" in now["settings"]
    finally:
        await pool.close()


async def test_a_failed_append_marks_its_connection(
    service_pool: asyncpg.Pool, store: PostgresEventStore
) -> None:
    """An append that does not return normally may have been interrupted inside
    `allocate_positions` with its session lock held: its connection gets the full reset."""
    duplicate = event()
    await store.append("E000001", None, [duplicate])
    async with service_pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        await store.append("E000002", None, [event()], conn=conn)
        assert not pool_reset.marked_for_full_reset(conn)
        with pytest.raises(DuplicateEventError):
            await store.append("E000003", None, [duplicate], conn=conn)
        assert pool_reset.marked_for_full_reset(conn)

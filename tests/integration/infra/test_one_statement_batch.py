"""A batch as one statement with the inbox's claim in it (decision 0325): the event store's
gate lets through only the events of keys the claim took, the statement commits on its own,
and a statement that fails leaves nothing of it, claim and checkpoint included, before the
applier applies the batch the segment way."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import cast

import asyncpg
import pytest
import structlog

from dxtalent_infra.applier import CAREFUL_BATCHES, BatchApplier
from dxtalent_infra.delivery import Delivery
from dxtalent_infra.eventstore import Gate, PostgresEventStore
from dxtalent_infra.inbox import PostgresInbox
from dxtalent_infra.metrics import HANDLER_SECONDS
from dxtalent_infra.records import NewEvent

TYPE = "dxtalent.enrollment.CourseCompleted.v1"


def event(event_id: str) -> NewEvent:
    return NewEvent(
        event_id=event_id,
        event_type=TYPE,
        data={"course_id": "DX-101"},
        occurred_at=dt.datetime(2025, 6, 12, 9, 30, tzinfo=dt.UTC),
        subject="E000001",
        causation_id=None,
        correlation_id=None,
    )


def deliveries(keys: Sequence[str], first_sequence: int = 1) -> list[Delivery]:
    return [
        Delivery(
            subject="test.subject",
            data=b"{}",
            headers={},
            stream_sequence=first_sequence + i,
            num_delivered=1,
            message_key=key,
            received_at=dt.datetime.now(dt.UTC),
        )
        for i, key in enumerate(keys)
    ]


class Appending:
    """Appends one event per message, its id `ev-<key>`, or the id `same_as` maps the key to
    (a duplicate id inside one statement: the statement fails after its gate ran)."""

    def __init__(self, store: PostgresEventStore, same_as: dict[str, str]) -> None:
        self._store = store
        self._same_as = same_as
        self.calls: list[str] = []

    def _id(self, key: str) -> str:
        return f"ev-{self._same_as.get(key, key)}"

    async def apply_claimed(
        self, conn: asyncpg.Connection, batch: Sequence[Delivery], gate: Gate
    ) -> set[str]:
        self.calls.append("apply_claimed")
        gated = await self._store.append_gated(
            [(f"s-{d.message_key}", event(self._id(d.message_key)), d.message_key) for d in batch],
            gate,
            conn=conn,
        )
        return gated.passed

    async def handle_many(self, conn: asyncpg.Connection, batch: Sequence[Delivery]) -> None:
        self.calls.append("handle_many")
        ids = {self._id(d.message_key): d for d in batch}
        if len(ids) < len(batch):
            raise ValueError("two messages of one segment record the same event")
        await self._store.append_new(
            [(f"s-{d.message_key}", event(i)) for i, d in ids.items()], conn=conn
        )

    async def __call__(self, conn: asyncpg.Connection, delivery: Delivery) -> None:
        await self.handle_many(conn, [delivery])


@pytest.fixture
async def store(pool: asyncpg.Pool, db_schema: str) -> PostgresEventStore:
    s = PostgresEventStore(pool, db_schema)
    await s.migrate()
    return s


@pytest.fixture
async def inbox(pool: asyncpg.Pool, db_schema: str) -> PostgresInbox:
    box = PostgresInbox(db_schema, "one-statement", "TEST")
    async with pool.acquire() as conn:
        await box.migrate(cast(asyncpg.Connection, conn))
    return box


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as proxy:
        yield cast(asyncpg.Connection, proxy)


def applier(inbox: PostgresInbox, handler: Appending) -> BatchApplier:
    return BatchApplier(
        inbox,
        handler,
        max_deliver=3,
        backoff=(),
        latency=HANDLER_SECONDS.labels("one-statement-test"),
        log=structlog.get_logger(),
    )


async def test_the_gate_lets_through_the_events_of_the_keys_it_claims(
    store: PostgresEventStore, inbox: PostgresInbox, pool: asyncpg.Pool
) -> None:
    """Keys claimed before keep their events out, an event stored before is skipped and
    reported, the checkpoint moves, the statement is committed when it returns, and the relay's
    hand-over holds exactly the events inserted, at the positions their outbox rows have."""
    handover = store.outbox_handover()
    async with connection(pool) as conn:
        async with conn.transaction():
            await inbox.claim(conn, ["k-1"], [1])
        await store.append_new([("s-x", event("ev-k-3"))], conn=conn)
        gate = inbox.gate(["k-0", "k-1", "k-2", "k-3"], [1, 2, 3, 4], advance_to=4)
        gated = await store.append_gated(
            [(f"s-{k}", event(f"ev-{k}"), k) for k in ("k-0", "k-1", "k-2", "k-3")],
            gate,
            conn=conn,
        )
        assert not conn.is_in_transaction()
    assert gated.passed == {"k-0", "k-2", "k-3"}
    assert gated.stored == {"ev-k-3"}
    async with connection(pool) as other:  # committed: another session sees it
        assert await inbox.checkpoint(other) == 4
        keys = await other.fetch(
            f'SELECT message_key FROM "{store.schema}".inbox ORDER BY message_key'
        )
        outbox = await other.fetch(
            f'SELECT position, event_id FROM "{store.schema}".outbox ORDER BY position'
        )
    assert [r["message_key"] for r in keys] == ["k-0", "k-1", "k-2", "k-3"]
    assert [r["event_id"] for r in outbox] == ["ev-k-3", "ev-k-0", "ev-k-2"]
    assert {p: e.event_id for p, e in handover.events.items()} == {
        r["position"]: r["event_id"] for r in outbox
    }


async def test_a_failing_statement_leaves_nothing_and_the_batch_goes_the_segment_way(
    store: PostgresEventStore, inbox: PostgresInbox, pool: asyncpg.Pool
) -> None:
    """The statement fails after its gate ran (two events with one id): its claim and its
    checkpoint are rolled back with it, the batch is applied in savepoint segments, every
    message once, and the next batch goes the segment way straight away."""
    handler = Appending(store, same_as={"k-3": "k-1"})
    apply = applier(inbox, handler)
    sent: list[str] = []
    async with connection(pool) as conn:
        conn.add_query_logger(lambda record: sent.append(str(getattr(record, "query", ""))))
        outcome = await apply.apply(conn, deliveries(["k-0", "k-1", "k-2", "k-3", "k-4"]))
        await asyncio.sleep(0)
        sent = [q for q in sent if "pg_catalog" not in q and "'jit'" not in q]  # asyncpg's own
        assert handler.calls[0] == "apply_claimed"
        assert "apply_claimed" not in handler.calls[1:]
        assert sent[0].startswith("WITH claimed AS")
        assert "BEGIN;" in sent
        assert outcome.applied == [0, 1, 2, 3, 4]
        assert not outcome.dead
        keys = await conn.fetchval(f'SELECT count(*) FROM "{store.schema}".inbox')
        assert (keys, await inbox.checkpoint(conn)) == (5, 5)
        assert len(await store.existing_event_ids([f"ev-k-{i}" for i in range(5)])) == 4
        handler.calls.clear()
        await apply.apply(conn, deliveries([str(uuid.uuid4())], first_sequence=6))
        assert handler.calls == ["handle_many"]  # careful now: segments
    assert apply._careful == CAREFUL_BATCHES - 2  # the failed batch and this one

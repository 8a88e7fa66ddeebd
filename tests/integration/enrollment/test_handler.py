"""The inbound handler's segment path against a real event store: duplicates (recorded before,
or twice in one segment) are counted and change nothing, in one append statement; and its
batches through the consumer's applier, one statement each with the inbox's claim."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import types
from typing import cast

import asyncpg
import pytest
import structlog

from dxtalent.citygen import generate_city
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.registry import parse_inbound
from dxtalent_enrollment.domain import fact_event_id
from dxtalent_enrollment.service import InboundHandler
from dxtalent_infra.applier import BatchApplier
from dxtalent_infra.delivery import Delivery, RejectMessage
from dxtalent_infra.eventstore import PostgresEventStore
from dxtalent_infra.inbox import PostgresInbox
from dxtalent_infra.metrics import HANDLER_SECONDS
from dxtalent_infra.records import RecordedEvent
from dxtalent_infra.runtime import ServiceContext
from tests.support.polling import eventually

CATALOG = load_catalog()


def deliveries(n: int) -> list[Delivery]:
    city = generate_city(CATALOG, seed=7, staff=20)
    out = []
    for i, event in enumerate(city.events[:n]):
        raw = event.to_json_bytes()
        parsed = parse_inbound(raw)
        out.append(
            Delivery(
                subject=event.nats_subject,
                data=raw,
                headers={},
                stream_sequence=i + 1,
                num_delivered=1,
                message_key=event.id,
                received_at=dt.datetime.now(dt.UTC),
                event=parsed,
            )
        )
    return out


async def test_segments_record_each_fact_once_and_count_the_duplicates(
    pool: asyncpg.Pool, db_schema: str
) -> None:
    """Two segments with facts repeated inside them and across them: each fact is recorded
    once, with contiguous stream versions, and every repeat counts as a duplicate."""
    store = PostgresEventStore(pool, db_schema)
    await store.migrate()
    ctx = types.SimpleNamespace(name=f"enrollment-{db_schema}", catalog=CATALOG, store=store)
    handler = InboundHandler(cast(ServiceContext, ctx))
    facts = deliveries(12)
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        async with conn.transaction():
            await handler.handle_many(conn, [*facts[:8], facts[0], facts[3]])
        async with conn.transaction():
            await handler.handle_many(conn, [facts[2], *facts[8:], facts[9], facts[5]])
    assert handler._duplicates._value.get() == 2 + 3
    ids = {fact_event_id(d.event.source, d.event.id) for d in facts}
    assert await store.existing_event_ids(list(ids)) == ids
    # read_all returns events once no open transaction can still join them, and that horizon
    # is the whole server's: tests running meanwhile on the same server hold it back a moment
    recorded: list[RecordedEvent] = []

    async def all_readable() -> bool:
        recorded[:] = await store.read_all(0, limit=100)
        return len(recorded) >= len(ids)

    await eventually(all_readable, "every recorded fact readable")
    assert sorted(e.event_id for e in recorded) == sorted(ids)
    for stream in {e.stream_id for e in recorded}:
        versions = [e.stream_version for e in await store.read_stream(stream)]
        assert versions == list(range(1, len(versions) + 1))


def test_check_refuses_before_the_batch_what_the_catalog_refuses() -> None:
    """A completion of a course the catalog does not know is refused by `check`, without the
    database, so the consumer dead-letters it and applies the rest of its batch at once."""
    handler = InboundHandler(cast(ServiceContext, types.SimpleNamespace(name="e", catalog=CATALOG)))
    facts = deliveries(40)
    completion = next(d for d in facts if d.subject.endswith("completion"))
    handler.check(completion)  # accepted
    event = completion.event
    unknown = event.model_copy(
        update={"data": event.data.model_copy(update={"course_id": "NO-SUCH"})}
    )
    with pytest.raises(RejectMessage, match="NO-SUCH"):
        handler.check(completion.with_event(unknown))


class Sent:
    """asyncpg's query logger: every statement a connection sent, BEGIN and COMMIT too, but
    asyncpg's own look-ups of types (the first time a statement is prepared)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, record: object) -> None:
        query = str(getattr(record, "query", ""))
        if "pg_catalog" not in query and "'jit'" not in query:
            self.sent.append(query)

    async def taken(self) -> list[str]:
        """What was sent since the last call (asyncpg calls loggers soon, not at once)."""
        await asyncio.sleep(0)
        sent, self.sent = self.sent, []
        return sent


async def test_a_batch_is_one_statement_that_carries_its_claim(
    pool: asyncpg.Pool, db_schema: str
) -> None:
    """Through the consumer's applier, a batch is one statement, outside any transaction,
    claiming its keys and advancing the checkpoint: a message claimed before (in this batch or
    an earlier one) is a duplicate and records nothing, a new message whose fact was recorded
    under another key is counted as a duplicate fact (decision 0325)."""
    store = PostgresEventStore(pool, db_schema)
    await store.migrate()
    inbox = PostgresInbox(db_schema, "enrollment", "DX_INBOUND")
    ctx = types.SimpleNamespace(name=f"enrollment-{db_schema}", catalog=CATALOG, store=store)
    handler = InboundHandler(cast(ServiceContext, ctx))
    applier = BatchApplier(
        inbox,
        handler,
        max_deliver=3,
        backoff=(),
        latency=HANDLER_SECONDS.labels("one-statement-test"),
        log=structlog.get_logger(),
    )
    facts = deliveries(12)
    again = dataclasses.replace(facts[1], message_key="another-key", stream_sequence=40)
    sent = Sent()
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        await inbox.migrate(conn)
        await sent.taken()
        conn.add_query_logger(sent)
        first = await applier.apply(conn, [*facts[:8], facts[0]])
        assert len(await sent.taken()) == 1
        assert not conn.is_in_transaction()
        second = await applier.apply(conn, [*facts[4:12], again])
        assert len(await sent.taken()) == 1
        assert await inbox.checkpoint(conn) == 40
        claimed = await conn.fetchval(f'SELECT count(*) FROM "{db_schema}".inbox')
    assert (first.applied, first.duplicates) == (list(range(8)), [8])
    assert (second.applied, second.duplicates) == ([4, 5, 6, 7, 8], [0, 1, 2, 3])
    assert claimed == 13
    assert handler._duplicates._value.get() == 1
    ids = {fact_event_id(d.event.source, d.event.id) for d in facts}
    assert await store.existing_event_ids(list(ids)) == ids


async def test_a_batch_with_a_refused_fact_goes_the_transaction_way(
    pool: asyncpg.Pool, db_schema: str
) -> None:
    """A fact `check` refuses: its batch is not one statement but BEGIN, claim, append, the
    refused key's release, COMMIT; the fact is dead-lettered and the rest are recorded."""
    store = PostgresEventStore(pool, db_schema)
    await store.migrate()
    inbox = PostgresInbox(db_schema, "enrollment", "DX_INBOUND")
    ctx = types.SimpleNamespace(name=f"enrollment-{db_schema}", catalog=CATALOG, store=store)
    applier = BatchApplier(
        inbox,
        InboundHandler(cast(ServiceContext, ctx)),
        max_deliver=3,
        backoff=(),
        latency=HANDLER_SECONDS.labels("one-statement-test"),
        log=structlog.get_logger(),
    )
    facts = deliveries(40)
    at = next(i for i, d in enumerate(facts) if d.subject.endswith("completion"))
    facts = facts[max(0, at - 5) :][:10]
    index = at - max(0, at - 5)
    completion = facts[index]
    event = completion.event
    facts[index] = completion.with_event(
        event.model_copy(update={"data": event.data.model_copy(update={"course_id": "NO-SUCH"})})
    )
    sent = Sent()
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        await inbox.migrate(conn)
        await sent.taken()
        conn.add_query_logger(sent)
        outcome = await applier.apply(conn, facts)
        sent_then = await sent.taken()
        assert (len(sent_then), sent_then[0], sent_then[-1]) == (5, "BEGIN;", "COMMIT;")
    assert [d.index for d in outcome.dead] == [index]
    assert outcome.applied == [i for i in range(len(facts)) if i != index]

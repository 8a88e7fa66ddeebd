"""The handler sends the update of the rows it found with the append of the batch's events
(decision 0296), against the statements it sent before (kept here as the reference): for
random batches of facts (records, nominations, completions, voids, departures, repeats), both
leave the same rows, events, outbox and membership counts, and the new way sends one write
statement fewer per batch that emits events and updates rows (two fewer when its count
changes travel too)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import asyncpg

from dxtalent_certification import memberships
from dxtalent_certification.domain.facts import Fact
from dxtalent_certification.handler import (
    CertificationHandler,
    _new_row,
    apply_fact_with_data,
    to_new_events,
)
from dxtalent_certification.memberships import row_changes
from dxtalent_certification.projection import COMPONENT, MIGRATIONS
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.envelope import CloudEvent
from dxtalent_contracts.registry import AnyEvent
from dxtalent_infra.delivery import Delivery
from dxtalent_infra.eventstore import PostgresEventStore
from dxtalent_infra.migrations import migrate, quote_ident
from dxtalent_infra.records import NewEvent
from tests.integration.certification.harness import L1_COURSES, Enrollment

SEEDS = range(12)
RECEIVED = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


class ReferenceHandler(CertificationHandler):
    """`_apply` as it was before 0296: the rows (update, insert), the counts, then the
    append, each its own statement."""

    async def _apply(
        self, conn: asyncpg.Connection, items: Sequence[tuple[Delivery, AnyEvent, Fact]]
    ) -> None:
        employees = [f.employee_id for _, _, f in items]
        rows = await self._projection.lock_many(conn, employees, turn=self._turn)
        working = dict(rows)
        emitted: dict[str, list[NewEvent]] = {}
        for delivery, event, fact in items:
            emp = fact.employee_id
            row = working.get(emp) or _new_row(emp)
            if row.facts.knows(fact):
                continue
            working[emp], changes, datas = apply_fact_with_data(self._catalog, row, fact, event.id)
            if changes:
                events = to_new_events(changes, event, delivery.received_at, datas)
                emitted.setdefault(emp, []).extend(events)
        changed = sorted(emp for emp, row in working.items() if row is not rows.get(emp))
        if changed:
            await self._projection.save_many(
                conn, [(working[emp], emp in rows) for emp in changed], found=rows
            )
            await self._counts.add(
                conn, row_changes((rows.get(emp), working[emp]) for emp in changed)
            )
        if self._store is not None and emitted:
            batches = [(f"employee-{emp}", None, events) for emp, events in emitted.items()]
            await self._store.append_many(batches, conn=conn)


class Writes:
    """asyncpg's query logger: how many writing statements a connection sent."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, record: Any) -> None:
        query = str(record.query)
        if "INSERT INTO" in query or query.lstrip().startswith("UPDATE"):
            self.count += 1


def scenario(seed: int) -> list[list[CloudEvent]]:
    """Facts about three employees in random order, cut into batches, some sent twice."""
    rng = random.Random(seed)
    people = [Enrollment() for _ in range(3)]
    facts: list[CloudEvent] = []
    for who in people:
        own: list[CloudEvent] = [who.record(effective=rng.choice(["2025-04-01", "2025-07-01"]))]
        if rng.random() < 0.7:
            own.append(who.nomination(2025))
        completions = [
            who.completion(course, f"2025-{rng.randint(5, 9):02d}-{rng.randint(1, 28):02d}")
            for course in rng.sample(L1_COURSES, rng.randint(2, len(L1_COURSES)))
        ]
        own += completions
        if rng.random() < 0.4:
            own.append(who.void(rng.choice(completions)))
        if rng.random() < 0.3:
            own.append(who.record(categories=("it",), effective="2025-10-01"))
        if rng.random() < 0.2:
            own.append(who.left("2026-01-01"))
        facts += own
    rng.shuffle(facts)
    facts += rng.sample(facts, 3)  # redeliveries
    batches: list[list[CloudEvent]] = []
    while facts:
        size = rng.choice([1, 2, 5, 10])
        batches.append(facts[:size])
        facts = facts[size:]
    return batches


async def handler_in(
    conn: asyncpg.Connection, pool: asyncpg.Pool, schema: str, cls: type[CertificationHandler]
) -> CertificationHandler:
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    store = PostgresEventStore(pool, schema)
    await store.migrate(conn)
    await migrate(conn, schema, COMPONENT, (*MIGRATIONS, memberships.MIGRATION))
    handler = cls.replaying(load_catalog(), schema)
    handler._store = store  # the live service's handler: events appended
    return handler


async def state(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the handler writes, comparable across schemas (positions and times left
    out: they are allocated per store)."""
    s = quote_ident(schema)
    queries = {
        "employees": f"SELECT employee_id, facts, state, sent FROM {s}.employees ORDER BY 1",
        "events": f"SELECT stream_id, stream_version, event_id, event_type, data, subject,"
        f" causation_id, correlation_id, occurred_at FROM {s}.events ORDER BY position",
        "outbox": f"SELECT event_id FROM {s}.outbox ORDER BY position",
        "streams": f"SELECT stream_id, version FROM {s}.streams ORDER BY 1",
        "days": f"SELECT * FROM {s}.membership_days WHERE n <> 0 ORDER BY 1, 2, 3",
        "years": f"SELECT * FROM {s}.membership_years WHERE n <> 0 ORDER BY 1, 2, 3",
    }
    return {k: [tuple(r) for r in await conn.fetch(q)] for k, q in queries.items()}


@contextlib.asynccontextmanager
async def schemas(pool: asyncpg.Pool, base: str) -> AsyncIterator[tuple[str, str]]:
    names = (f"{base}_new", f"{base}_ref")
    try:
        yield names
    finally:
        for name in names:
            await pool.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")


async def test_the_update_along_the_append_writes_what_the_separate_statements_wrote(
    database_url: str, db_schema: str
) -> None:
    """Per seed, the same batches through both handlers, each batch in a transaction: equal
    rows, events, outbox and counts after each batch; one write statement fewer in each batch
    that both updated a row found and emitted events, and never more."""
    saved_somewhere = 0
    async with (
        asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool,
        pool.acquire() as proxy,
    ):
        conn = cast(asyncpg.Connection, proxy)
        for seed in SEEDS:
            async with schemas(pool, f"{db_schema}_{seed}") as (new_schema, ref_schema):
                new = await handler_in(conn, pool, new_schema, CertificationHandler)
                ref = await handler_in(conn, pool, ref_schema, ReferenceHandler)
                seq = 0
                for batch in scenario(seed):
                    deliveries = []
                    for event in batch:
                        seq += 1
                        deliveries.append(
                            Delivery(event.nats_subject, b"", {}, seq, 1, event.id, RECEIVED, event)
                        )
                    counted = []
                    for handler in (new, ref):
                        writes = Writes()
                        conn.add_query_logger(writes)
                        async with conn.transaction():
                            await handler.handle_many(conn, deliveries)
                        await asyncio.sleep(0)  # asyncpg calls its loggers soon, not at once
                        conn.remove_query_logger(writes)
                        counted.append(writes.count)
                    assert await state(conn, new_schema) == await state(conn, ref_schema)
                    assert counted[0] <= counted[1]
                    saved_somewhere += counted[1] - counted[0]
                assert (await state(conn, new_schema))["events"]
    assert saved_somewhere > 0

"""PostgresEventStore against a real PostgreSQL: optimistic concurrency, idempotency by
event id, immutability, gap-safe `read_all`, and migrations started several times at once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator
from typing import cast

import asyncpg
import pytest

from dxtalent_infra.eventstore import (
    MIGRATIONS,
    ConcurrencyError,
    DuplicateEventError,
    PostgresEventStore,
    Write,
)
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.records import NewEvent

TYPE = "dxtalent.enrollment.CourseCompleted.v1"


def event(n: int = 0, subject: str = "E000001") -> NewEvent:
    return NewEvent(
        event_id=str(uuid.uuid4()),
        event_type=TYPE,
        data={"n": n, "course_id": "DX-101", "note": None},
        occurred_at=dt.datetime(2025, 6, 12, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=9))),
        subject=subject,
        causation_id="cause-1",
        correlation_id="corr-1",
    )


@pytest.fixture
async def store(pool: asyncpg.Pool, db_schema: str) -> PostgresEventStore:
    s = PostgresEventStore(pool, db_schema)
    await s.migrate()
    return s


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as proxy:
        yield cast(asyncpg.Connection, proxy)


async def test_migrations_started_five_times_at_once_apply_once(
    pool: asyncpg.Pool, db_schema: str
) -> None:
    """Five replicas migrating concurrently: one applies every version, the others find them
    done."""
    store = PostgresEventStore(pool, db_schema)
    results = await asyncio.gather(*(store.migrate() for _ in range(5)))
    assert sorted(results) == [[], [], [], [], [m.version for m in MIGRATIONS]]
    assert await store.append("s", 0, [event()]) == 1


async def test_two_concurrent_appends_at_one_expected_version_exactly_one_wins(
    store: PostgresEventStore,
) -> None:
    """Given a stream at version 1, two writers appending at version 1 at once: one wins."""
    for round_ in range(10):
        stream = f"employee-{round_}"
        await store.append(stream, 0, [event()])
        results = await asyncio.gather(
            store.append(stream, 1, [event(1)]),
            store.append(stream, 1, [event(2)]),
            return_exceptions=True,
        )
        assert sorted(map(type, results), key=str) == sorted([int, ConcurrencyError], key=str)
        error = next(r for r in results if isinstance(r, ConcurrencyError))
        assert (error.stream_id, error.expected, error.actual) == (stream, 1, 2)
        assert f"'{stream}' is at version 2" in str(error)
        assert "expected version 1" in str(error)
        assert [e.stream_version for e in await store.read_stream(stream)] == [1, 2]


async def test_a_writer_waiting_on_an_open_append_fails_once_it_commits(
    store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    """Writer A holds version 1 uncommitted; B at version 0 waits, then gets ConcurrencyError."""
    async with connection(pool) as conn:
        tx = conn.transaction()
        await tx.start()
        await store.append("s", 0, [event()], conn=conn)
        waiting = asyncio.create_task(store.append("s", 0, [event()]))
        await asyncio.sleep(0.2)  # gives B time to block; the assertions hold either way
        assert not waiting.done()
        await tx.commit()
        with pytest.raises(ConcurrencyError, match=r"'s' is at version 1.*expected version 0"):
            await waiting


async def test_expected_versions_are_checked(store: PostgresEventStore) -> None:
    """0 means a new stream, n means exactly n, None means any version."""
    assert await store.append("s", 0, [event(), event()]) == 2
    assert await store.append("s", None, [event()]) == 3
    assert await store.append("s", 3, [event()]) == 4
    with pytest.raises(ConcurrencyError, match="expected version 0"):
        await store.append("s", 0, [event()])
    with pytest.raises(ConcurrencyError, match="'other' is at version 0"):
        await store.append("other", 2, [event()])
    assert await store.stream_version("s") == 4
    assert await store.stream_version("other") == 0
    assert await store.append("s", 4, []) == 4


async def test_appending_an_existing_event_id_is_detected(store: PostgresEventStore) -> None:
    """Idempotency: the same event id twice is refused with DuplicateEventError."""
    first = event()
    await store.append("a", None, [first])
    assert await store.event_exists(first.event_id)
    with pytest.raises(DuplicateEventError) as caught:
        await store.append("b", None, [first])
    assert caught.value.event_id == first.event_id
    with pytest.raises(DuplicateEventError):
        await store.append_many([("c", None, [event()]), ("d", None, [first])])
    assert await store.stream_version("b") == 0
    assert await store.stream_version("c") == 0
    assert await store.existing_event_ids([first.event_id, "nope"]) == {first.event_id}


async def test_events_round_trip_and_are_immutable(
    store: PostgresEventStore, pool: asyncpg.Pool, db_schema: str
) -> None:
    """What is appended reads back unchanged; UPDATE and DELETE on events are refused."""
    appended = event(7)
    await store.append("s", 0, [appended])
    [recorded] = await store.read_stream("s")
    assert recorded.event_id == appended.event_id
    assert recorded.event_type == TYPE
    assert recorded.data == appended.data
    assert recorded.occurred_at == appended.occurred_at
    assert (recorded.subject, recorded.causation_id, recorded.correlation_id) == (
        "E000001",
        "cause-1",
        "corr-1",
    )
    for sql in ("UPDATE {}.events SET data = '{{}}'", "DELETE FROM {}.events"):
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await pool.execute(sql.format(quote_ident(db_schema)))


async def test_append_inside_the_callers_transaction_rolls_back_with_it(
    store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    """With conn=, the append is part of the caller's transaction; a ConcurrencyError leaves
    that transaction usable."""
    async with connection(pool) as conn:
        async with conn.transaction():
            await store.append("s", 0, [event()], conn=conn)
            with pytest.raises(ConcurrencyError):
                await store.append("s", 0, [event()], conn=conn)
            assert await store.append("s", 1, [event()], conn=conn) == 2
            assert await store.append_many([("t", 0, [event()])], conn=conn) == [1]
        tx = conn.transaction()
        await tx.start()
        await store.append("s", 2, [event()], conn=conn)
        await tx.rollback()
    assert await store.stream_version("s") == 2
    assert await store.stream_version("t") == 1


async def test_append_many_writes_many_streams_atomically(store: PostgresEventStore) -> None:
    """One transaction over many streams; one stale expectation fails them all."""
    await store.append("x", 0, [event()])
    versions = await store.append_many(
        [("x", 1, [event(), event()]), ("y", 0, [event()]), ("x", 3, [event()])]
    )
    assert versions == [3, 1, 4]
    with pytest.raises(ConcurrencyError, match="'x' is at version 4"):
        await store.append_many([("z", 0, [event()]), ("x", 1, [event()])])
    assert await store.stream_version("z") == 0
    assert [e.stream_version for e in await store.read_stream("x")] == [1, 2, 3, 4]


async def test_concurrent_append_many_on_overlapping_streams_neither_deadlocks_nor_loses(
    store: PostgresEventStore,
) -> None:
    """Batches over the same streams in different orders, at once: every event kept."""
    streams = [f"s{i}" for i in range(30)]

    async def writer() -> None:
        for _ in range(5):
            chosen = random.sample(streams, 20)
            await store.append_many([(s, None, [event()]) for s in chosen])

    await asyncio.wait_for(asyncio.gather(*(writer() for _ in range(4))), 30)
    total = sum([await store.stream_version(s) for s in streams])
    assert total == 4 * 5 * 20
    for s in streams:
        versions = [e.stream_version for e in await store.read_stream(s)]
        assert versions == list(range(1, len(versions) + 1))
        positions = [e.position for e in await store.read_stream(s)]
        assert positions == sorted(positions)


async def read_everything(store: PostgresEventStore, after: int = 0) -> list[int]:
    positions: list[int] = []
    while batch := await store.read_all(after, limit=2):
        positions += [e.position for e in batch]
        after = batch[-1].position
    return positions


async def test_read_all_never_skips_an_earlier_position_that_commits_late(
    store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    """A takes position 1 and stays open, B takes 2 and commits: read_all holds 2 back until
    A commits, then returns 1 and 2."""
    async with connection(pool) as conn_a:
        tx = conn_a.transaction()
        await tx.start()
        await store.append("a", 0, [event()], conn=conn_a)
        await store.append("b", 0, [event()])
        assert await read_everything(store) == []
        await tx.commit()
    await eventually_positions(store, [1, 2])


async def test_read_all_waits_for_a_younger_transaction_that_allocated_first(
    store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    """An older transaction (smaller xid) that takes a later position and commits first is
    still held back while the younger one with the earlier position is open (a filter on
    each row's own xid would return it and skip position 1)."""
    async with connection(pool) as older, connection(pool) as younger:
        tx_old, tx_young = older.transaction(), younger.transaction()
        await tx_old.start()
        await older.fetchval("SELECT pg_current_xact_id()")
        await tx_young.start()
        await store.append("young", 0, [event()], conn=younger)
        await store.append("old", 0, [event()], conn=older)
        await tx_old.commit()
        assert await read_everything(store) == []
        await tx_young.commit()
    await eventually_positions(store, [1, 2])


async def eventually_positions(store: PostgresEventStore, expected: list[int]) -> None:
    """read_all may lag behind other tests' open transactions on a shared server: poll."""
    deadline = asyncio.get_running_loop().time() + 20
    while (got := await read_everything(store)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"read_all gave {got}"
        await asyncio.sleep(0.05)


async def test_a_store_without_notify_appends_all_the_same(
    pool: asyncpg.Pool, db_schema: str
) -> None:
    """notify=False only drops the NOTIFY; the events and their outbox rows are written."""
    quiet = PostgresEventStore(pool, db_schema, notify=False)
    await quiet.migrate()
    assert await quiet.append("s", 0, [event()]) == 1
    assert await quiet.append_many([("s", 1, [event()]), ("t", 0, [event()])]) == [2, 1]
    outbox = await pool.fetchval(f"SELECT count(*) FROM {quote_ident(db_schema)}.outbox")
    assert outbox == 3


async def test_append_many_reports_the_first_failing_batch_and_writes_nothing(
    store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    """A failed expectation in the one-statement append: the error names the first batch (in
    call order) that fails with the version it would have seen; the streams bumped before the
    check failed are undone, nothing is inserted, and the caller's transaction goes on."""
    await store.append("x", 0, [event(), event()])
    async with connection(pool) as conn, conn.transaction():
        with pytest.raises(ConcurrencyError) as caught:
            await store.append_many(
                [("a", None, [event()]), ("x", 2, [event()]), ("y", 3, [event()])], conn=conn
            )
        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == ("y", 3, 0)
        with pytest.raises(ConcurrencyError) as caught:
            await store.append_many([("b", 0, [event()]), ("x", 1, [event()])], conn=conn)
        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == ("x", 1, 2)
        for stream, version in (("a", 0), ("b", 0), ("x", 2), ("y", 0)):
            assert await store.stream_version(stream, conn=conn) == version
        assert await store.append_many([("x", 2, [event()]), ("a", 0, [])], conn=conn) == [3, 0]
    assert [e.stream_version for e in await store.read_stream("x")] == [1, 2, 3]
    assert await store.read_stream("a") == []
    outbox = await pool.fetchval(f"SELECT count(*) FROM {quote_ident(store.schema)}.outbox")
    assert outbox == 3


async def test_append_many_with_one_stream_several_times(store: PostgresEventStore) -> None:
    """Later batches of a stream see the earlier ones' versions; expectations that no start
    version satisfies fail with the version the failing batch would have seen."""
    assert await store.append_many(
        [("s", 0, [event()]), ("t", None, [event()]), ("s", 1, [event(), event()]), ("s", 3, [])]
    ) == [1, 1, 3, 3]
    with pytest.raises(ConcurrencyError) as caught:
        await store.append_many([("s", 3, [event()]), ("s", 3, [event()])])
    assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == ("s", 3, 4)
    with pytest.raises(ConcurrencyError) as caught:
        await store.append_many([("n", None, [event()]), ("n", 0, [event()])])
    assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == ("n", 0, 1)
    assert await store.stream_version("s") == 3
    assert await store.stream_version("n") == 0
    assert [e.stream_version for e in await store.read_stream("s")] == [1, 2, 3]


@pytest.mark.parametrize("existing", [True, False], ids=["existing", "new"])
async def test_append_many_waiting_for_another_writer_sees_its_committed_version(
    store: PostgresEventStore, pool: asyncpg.Pool, existing: bool
) -> None:
    """Two appenders on overlapping streams, listed in opposite orders: the second waits for
    the first's locks (no deadlock), then checks its expectations against the version the
    first committed, for a stream that existed and for one the first created."""
    if existing:
        await store.append_many([("p", 0, [event()]), ("q", 0, [event()])])
    start = 1 if existing else 0
    async with connection(pool) as first, connection(pool) as second:
        tx = first.transaction()
        await tx.start()
        await store.append_many([("p", start, [event()]), ("q", start, [event()])], conn=first)
        expecting = asyncio.create_task(
            store.append_many([("q", start, [event()]), ("p", start, [event()])], conn=second)
        )
        await asyncio.sleep(0.3)
        assert not expecting.done()
        await tx.commit()
        with pytest.raises(ConcurrencyError) as caught:
            await asyncio.wait_for(expecting, 10)
        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
            "q",
            start,
            start + 1,
        )
        tx = first.transaction()
        await tx.start()
        await store.append_many([("q", None, [event()])], conn=first)
        any_version = asyncio.create_task(
            store.append_many([("r", None, [event()]), ("q", None, [event()])], conn=second)
        )
        await asyncio.sleep(0.3)
        assert not any_version.done()
        await tx.commit()
        assert await asyncio.wait_for(any_version, 10) == [1, start + 3]
    assert [e.stream_version for e in await store.read_stream("q")] == list(range(1, start + 4))


async def test_append_new_skips_stored_events_in_one_statement(
    store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    """append_new appends only events whose id is not stored, with contiguous versions, and
    returns the stored ids; a stream whose events were all stored is not touched."""
    old = [event(), event()]
    await store.append_many([("a", 0, [old[0]]), ("b", 0, [old[1]])])
    first, second, third = event(), event(), event()
    stored = await store.append_new(
        [("a", first), ("b", old[1]), ("a", old[0]), ("c", second), ("a", third)]
    )
    assert stored == {old[0].event_id, old[1].event_id}
    assert [(e.stream_version, e.event_id) for e in await store.read_stream("a")] == [
        (1, old[0].event_id),
        (2, first.event_id),
        (3, third.event_id),
    ]
    assert await store.stream_version("b") == 1
    assert await store.stream_version("c") == 1
    positions = [e.position for e in await store.read_stream("a")]
    assert positions == sorted(positions)
    assert await store.append_new([("a", first)]) == {first.event_id}
    assert await store.append_new([]) == set()
    outbox = await pool.fetchval(f"SELECT count(*) FROM {quote_ident(store.schema)}.outbox")
    assert outbox == 5


async def test_append_new_of_an_id_stored_meanwhile_is_a_duplicate(
    store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    """An id another transaction stores while append_new runs is not silently dropped: the
    append fails with DuplicateEventError and writes nothing (the consumer applies again)."""
    racing = event()
    async with connection(pool) as conn:
        tx = conn.transaction()
        await tx.start()
        await store.append("other", None, [racing], conn=conn)
        task = asyncio.create_task(store.append_new([("mine", event()), ("mine", racing)]))
        await asyncio.sleep(0.3)
        await tx.commit()
    with pytest.raises(DuplicateEventError):
        await asyncio.wait_for(task, 10)
    assert await store.stream_version("mine") == 0


async def test_append_many_and_append_new_store_events_as_append_does(
    store: PostgresEventStore,
) -> None:
    """The many-stream statements take the events as one JSON document: data (unicode and
    nested), times (offset, microseconds) and the optional fields read back as `append`'s."""
    base = event()
    variants = [
        NewEvent(
            event_id=str(uuid.uuid4()),
            event_type=TYPE,
            data={"name": "Ōsaka \"'\\ 日本", "nested": {"a": [1, 2.5, None, True]}, "n": 0},
            occurred_at=dt.datetime(2025, 6, 12, 9, 30, 1, 123456, tzinfo=base.occurred_at.tzinfo),
            subject=subject,
            causation_id=cause,
            correlation_id=None,
        )
        for subject, cause in (("E1", "c"), (None, None))
    ]
    await store.append("single", 0, variants[:1])
    again = dataclasses.replace(variants[0], event_id=str(uuid.uuid4()))
    await store.append_many([("many", 0, [again])])
    await store.append_new([("new", variants[1])])
    [single], [many], [new] = [await store.read_stream(s) for s in ("single", "many", "new")]
    fields = ("event_type", "data", "occurred_at", "subject", "causation_id", "correlation_id")
    assert [getattr(many, f) for f in fields] == [getattr(single, f) for f in fields]
    assert (new.data, new.occurred_at, new.subject, new.causation_id) == (
        variants[1].data,
        variants[1].occurred_at,
        None,
        None,
    )


async def test_event_types_and_times_are_checked_before_anything_is_sent(
    store: PostgresEventStore,
) -> None:
    """A type without its version, or a naive time, is refused by every append, also after
    valid events of other types went through."""
    await store.append_many([("ok", 0, [event()])])
    bad_type = dataclasses.replace(event(), event_type="dxtalent.enrollment.CourseCompleted")
    naive = dataclasses.replace(event(), occurred_at=dt.datetime(2025, 6, 12, 9, 30))
    for bad in (bad_type, naive):
        with pytest.raises(ValueError, match=r"CloudEvents type|timezone-aware"):
            await store.append_many([("s", None, [event(), bad])])
        with pytest.raises(ValueError, match=r"CloudEvents type|timezone-aware"):
            await store.append_new([("s", bad)])
        with pytest.raises(ValueError, match=r"CloudEvents type|timezone-aware"):
            await store.append("s", None, [bad])
    assert await store.stream_version("s") == 0


class Statements:
    """asyncpg's query logger: the statements a connection sent that write (not BEGIN, nor
    asyncpg's own look-ups of types)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, record: object) -> None:
        query = str(getattr(record, "query", ""))
        if "INSERT INTO" in query:
            self.sent.append(query)

    async def taken(self) -> int:
        """How many were sent since the last call (asyncpg calls loggers soon, not at once)."""
        await asyncio.sleep(0)
        count = len(self.sent)
        self.sent.clear()
        return count


async def notes_table(pool: asyncpg.Pool, schema: str) -> str:
    table = f"{quote_ident(schema)}.notes"
    await pool.execute(f"CREATE TABLE {table} (k text PRIMARY KEY, a int, b text)")
    return table


def notes(table: str, rows: dict[str, tuple[int, str]]) -> Write:
    """An upsert of `rows` into the test's notes table, with parameters $1..$3 of its own."""
    return Write(
        f"INSERT INTO {table} (k, a, b) SELECT * FROM unnest($1::text[], $2::int[], $3::text[])"
        " ON CONFLICT (k) DO UPDATE SET a = excluded.a, b = excluded.b",
        (list(rows), [a for a, _ in rows.values()], [b for _, b in rows.values()]),
    )


async def test_writes_along_an_append_travel_in_its_statement(
    store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    """`along` writes made by `append_many` (any version) and `append_new` go in the append's
    one statement, their parameters renumbered after the append's; with an expected version
    they are a statement of their own after the append, which succeeded."""
    table = await notes_table(pool, store.schema)
    async with connection(pool) as conn:
        statements = Statements()
        conn.add_query_logger(statements)
        async with conn.transaction():
            versions = await store.append_many(
                [("a", None, [event()]), ("b", None, [event(), event()])],
                conn=conn,
                along=[notes(table, {"k1": (1, "x")}), notes(table, {"k2": (2, "y")})],
            )
            assert versions == [1, 2]
            assert await statements.taken() == 1
            stored = await store.append_new(
                [("a", event())], conn=conn, along=[notes(table, {"k1": (3, "z")})]
            )
            assert stored == set()
            assert await statements.taken() == 1
            await store.append_many(
                [("a", 2, [event()])], conn=conn, along=[notes(table, {"k3": (4, "w")})]
            )
            assert await statements.taken() == 2
    rows = await pool.fetch(f"SELECT k, a, b FROM {table} ORDER BY k")
    assert [tuple(r) for r in rows] == [("k1", 3, "z"), ("k2", 2, "y"), ("k3", 4, "w")]
    assert await store.stream_version("a") == 3


async def test_writes_along_a_failed_append_are_not_made(
    store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    """A failed expectation leaves the writes unmade and the transaction usable; a write that
    fails fails the append with it (one statement)."""
    table = await notes_table(pool, store.schema)
    await store.append("x", 0, [event()])
    async with connection(pool) as conn, conn.transaction():
        with pytest.raises(ConcurrencyError):
            await store.append_many(
                [("x", 0, [event()])], conn=conn, along=[notes(table, {"k": (1, "x")})]
            )
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
    async with connection(pool) as conn:
        with pytest.raises(asyncpg.CardinalityViolationError):  # a key twice in one upsert
            await store.append_many(
                [("x", None, [event()])],
                conn=conn,
                along=[
                    Write(
                        f"INSERT INTO {table} (k) SELECT unnest($1::text[])"
                        " ON CONFLICT (k) DO UPDATE SET a = 1",
                        (["k", "k"],),
                    )
                ],
            )
    assert await store.stream_version("x") == 1
    assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0


@pytest.mark.parametrize(
    "sql",
    [
        "WITH w AS (SELECT 1) INSERT INTO t SELECT * FROM w",
        "UPDATE t SET b = $$x$$",
        "UPDATE t SET b = $q$x$q$ WHERE c = $1",
    ],
)
async def test_a_write_the_append_cannot_carry_is_refused(
    store: PostgresEventStore, sql: str
) -> None:
    """A write with a WITH of its own, or with dollar quotes, is refused before anything is
    sent (it could not be nested, or renumbered)."""
    with pytest.raises(ValueError, match="without WITH"):
        await store.append_many([("a", None, [event()])], along=[Write(sql, ())])
    assert await store.stream_version("a") == 0

"""OutboxRelay against real NATS JetStream and PostgreSQL: CloudEvents on the wire, nothing
skipped when transactions commit out of position order, exactly once after a crash between
publish and mark, and recovery by itself when NATS or PostgreSQL restarts.

Every test runs twice: with the relay reading each event from `events`, and with the
fixture's store handing its appended events over to the relays of the test (`handover`,
decision 0320); a store or relay a test makes itself has none."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import asyncpg
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js.api import RawStreamMsg
from nats.js.client import JetStreamContext

from dxtalent_infra import pool_reset
from dxtalent_infra.eventstore import (
    OutboxHandover,
    PostgresEventStore,
    outbox_channel,
    wake_relays_after_commit,
)
from dxtalent_infra.nats import connect_nats
from dxtalent_infra.outbox import OutboxRelay
from dxtalent_infra.records import NewEvent
from dxtalent_infra.servers import EmbeddedNats, EmbeddedPostgres
from dxtalent_infra.streams import ensure_streams
from dxtalent_infra.topology import EVENTS, Topology
from tests.support.polling import eventually

TYPE = "dxtalent.enrollment.CourseCompleted.v1"
SUBJECT = "dx.events.enrollment.course-completed"
SOURCE = "urn:test:enrollment"


def event(n: int = 0) -> NewEvent:
    return NewEvent(
        event_id=f"ev-{uuid.uuid4()}",
        event_type=TYPE,
        data={"employee_id": "E000001", "n": n, "skills": [], "fiscal_year": None},
        occurred_at=dt.datetime(2025, 6, 12, 0, 30, tzinfo=dt.UTC),
        subject="E000001",
        causation_id="cause-1",
        correlation_id="corr-1",
    )


async def stream_messages(js: JetStreamContext, topology: Topology) -> list[RawStreamMsg]:
    name = topology.stream(EVENTS.name)
    info = await js.stream_info(name)
    return [
        await js.get_msg(name, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def stream_ids(js: JetStreamContext, topology: Topology) -> list[str]:
    return [json.loads(m.data or b"")["id"] for m in await stream_messages(js, topology)]


#: the fixture store's hand-over by schema, for `relay_for`
HANDOVERS: dict[str, OutboxHandover] = {}


@pytest.fixture(params=["read", "handover"])
async def store(
    request: pytest.FixtureRequest, pool: asyncpg.Pool, db_schema: str
) -> AsyncIterator[PostgresEventStore]:
    s = PostgresEventStore(pool, db_schema)
    await s.migrate()
    if request.param == "handover":
        HANDOVERS[db_schema] = s.outbox_handover()
    yield s
    HANDOVERS.pop(db_schema, None)


async def nats_for(url: str, topology: Topology) -> Client:
    nc = await connect_nats(url, name="test-outbox", reconnect_wait_s=0.2)
    await ensure_streams(nc.jetstream(), topology)
    return nc


@pytest.fixture
async def nc(nats_url: str, topology: Topology) -> AsyncIterator[Client]:
    conn = await nats_for(nats_url, topology)
    yield conn
    await conn.close()


def relay_for(
    pool: asyncpg.Pool, schema: str, nc: Client, topology: Topology, **kwargs: Any
) -> OutboxRelay:
    options: dict[str, Any] = {
        "publish_timeout": 2.0,
        "max_backoff": 0.5,
        "handover": HANDOVERS.get(schema),
        **kwargs,
    }
    return OutboxRelay(pool, schema, nc.jetstream(), topology, source=SOURCE, **options)


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        await asyncio.wait_for(relay.stop(), 15)
        await task


async def test_committed_events_go_out_as_cloudevents_in_stream_order(
    store: PostgresEventStore, pool: asyncpg.Pool, db_schema: str, nc: Client, topology: Topology
) -> None:
    """Given appended events, the relay publishes each once as a structured CloudEvent with
    Nats-Msg-Id and Content-Type headers, per stream in version order."""
    events = [event(i) for i in range(5)]
    await store.append("E000001", 0, events[:3])
    await store.append("E000002", 0, events[3:])
    relay = relay_for(pool, db_schema, nc, topology, batch_size=2)
    assert await relay.pending() == 5
    assert await relay.drain_once() == 5
    assert await relay.pending() == 0
    messages = await stream_messages(nc.jetstream(), topology)
    assert [m.headers and m.headers["Nats-Msg-Id"] for m in messages] == [
        e.event_id for e in events
    ]
    first = messages[0]
    assert first.subject == topology.subject(SUBJECT)
    assert first.headers is not None
    assert first.headers["Content-Type"] == "application/cloudevents+json"
    assert json.loads(first.data or b"") == {
        "specversion": "1.0",
        "id": events[0].event_id,
        "source": SOURCE,
        "type": TYPE,
        "subject": "E000001",
        "time": "2025-06-12T00:30:00+00:00",
        "datacontenttype": "application/json",
        "causationid": "cause-1",
        "correlationid": "corr-1",
        "data": events[0].data,
    }


async def test_an_event_committing_late_with_an_earlier_position_is_not_skipped(
    store: PostgresEventStore, pool: asyncpg.Pool, db_schema: str, nc: Client, topology: Topology
) -> None:
    """A appends (position 1) and stays open; B appends (position 2) and commits; the relay
    publishes B; when A commits it publishes A too: commit order B, A, nothing skipped."""
    a, b = event(1), event(2)
    relay = relay_for(pool, db_schema, nc, topology)
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        tx = conn.transaction()
        await tx.start()
        await store.append("A", 0, [a], conn=conn)
        await store.append("B", 0, [b])
        assert await relay.drain_once() == 1
        await tx.commit()
    assert await relay.drain_once() == 1
    assert await stream_ids(nc.jetstream(), topology) == [b.event_id, a.event_id]
    recorded: list[str] = []

    async def read_all_has_both() -> bool:
        recorded[:] = [e.event_id for e in await store.read_all(0)]
        return len(recorded) == 2

    await eventually(read_all_has_both, "read_all returns A and B")
    assert recorded == [a.event_id, b.event_id]


class CrashError(Exception):
    """Stands for the process dying between the JetStream ack and marking the batch done."""


async def test_a_crash_between_publish_and_mark_publishes_each_event_exactly_once(
    store: PostgresEventStore, pool: asyncpg.Pool, db_schema: str, nc: Client, topology: Topology
) -> None:
    """The first relay publishes then dies before deleting the outbox rows (failing hook,
    then a cancelled task); a new relay republishes and JetStream keeps one copy of each."""
    events = [event(i) for i in range(40)]
    await store.append_many([(f"E{i}", 0, [e]) for i, e in enumerate(events)])

    async def crash(_: Sequence[str]) -> None:
        raise CrashError

    with pytest.raises(CrashError):
        await relay_for(
            pool, db_schema, nc, topology, batch_size=10, on_published=crash
        ).drain_once()
    assert await relay_for(pool, db_schema, nc, topology).pending() == 40

    published = asyncio.Event()

    async def hang(_: Sequence[str]) -> None:
        published.set()
        await asyncio.Event().wait()

    hanging = relay_for(pool, db_schema, nc, topology, batch_size=25, on_published=hang)
    task = asyncio.create_task(hanging.run())
    await asyncio.wait_for(published.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    restarted = relay_for(pool, db_schema, nc, topology)
    assert await restarted.drain_once() == 40
    assert await restarted.pending() == 0
    assert await stream_ids(nc.jetstream(), topology) == [e.event_id for e in events]


async def test_handed_over_events_go_out_from_memory_in_position_order_with_the_others(
    pool: asyncpg.Pool, db_schema: str, nc: Client, topology: Topology
) -> None:
    """Decision 0320: events this store appended go out from the hand-over; events another
    writer appended (a store without one) and an event whose position was given to a
    rolled-back append are read from the store; one batch, position order, and the
    hand-over keeps only the rolled-back event (until it ages out)."""
    store = PostgresEventStore(pool, db_schema)
    await store.migrate()
    handover = store.outbox_handover()
    other = PostgresEventStore(pool, db_schema)
    a, lost, b, c, d = (event(i) for i in range(5))
    await store.append_new([("s1", a)])
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        tx = conn.transaction()
        await tx.start()
        await store.append_many([("s2", None, [lost])], conn=conn)
        await tx.rollback()
    await other.append_many([("s3", None, [b])])
    await store.append_many([("s4", None, [c]), ("s5", None, [d])])
    assert await store.append_new([("s1", a), ("s6", d)]) == {a.event_id, d.event_id}
    assert len(handover.events) == 4  # a, the rolled-back one, c, d
    relay = relay_for(pool, db_schema, nc, topology, handover=handover)
    assert await relay.drain_once() == 4
    messages = await stream_messages(nc.jetstream(), topology)
    assert [json.loads(m.data or b"")["id"] for m in messages] == [e.event_id for e in (a, b, c, d)]
    assert [json.loads(m.data or b"")["data"] for m in messages] == [e.data for e in (a, b, c, d)]
    assert [e.event_id for e in handover.events.values()] == [lost.event_id]


async def test_two_running_relays_take_turns_and_keep_each_stream_in_order(
    store: PostgresEventStore,
    pool: asyncpg.Pool,
    database_url: str,
    db_schema: str,
    nc: Client,
    topology: Topology,
) -> None:
    """Two relays on one schema (two replicas; the second has no hand-over) while events
    are appended: each event is stored once, each stream in version order, and no relay
    lock is left held once both stopped (a batch holds a session lock, decision 0320)."""
    other = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        first = relay_for(pool, db_schema, nc, topology, batch_size=7)
        second = relay_for(other, db_schema, nc, topology, batch_size=5, handover=None)
        appended: list[NewEvent] = []
        async with running(first), running(second):
            for round_ in range(12):
                batch = [event(round_ * 10 + i) for i in range(10)]
                await store.append_many([(f"S{i % 4}", None, [e]) for i, e in enumerate(batch)])
                appended += batch
                await asyncio.sleep(0.01)
            await eventually(lambda: _drained(first), "outbox drained")
        messages = await stream_messages(nc.jetstream(), topology)
        ids = [json.loads(m.data or b"")["id"] for m in messages]
        assert sorted(ids) == sorted(e.event_id for e in appended)
        for stream in range(4):
            mine = [e.event_id for i, e in enumerate(appended) if i % 10 % 4 == stream]
            assert [i for i in ids if i in set(mine)] == mine
        async with pool.acquire() as conn:
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1"
                " AND classid = $1::bigint::oid AND objid = $2::bigint::oid",
                (first._lock_key >> 32) & 0xFFFFFFFF,
                first._lock_key & 0xFFFFFFFF,
            )
        assert held == 0
    finally:
        await other.close()


async def _drained(relay: OutboxRelay) -> bool:
    return await relay.pending() == 0


async def test_running_relay_wakes_on_notify(
    store: PostgresEventStore, pool: asyncpg.Pool, db_schema: str, nc: Client, topology: Topology
) -> None:
    """With a 60 s poll interval, an append still reaches JetStream at once (LISTEN/NOTIFY)."""
    relay = relay_for(pool, db_schema, nc, topology, poll_interval=60.0)
    async with running(relay):
        await asyncio.sleep(0.2)  # let the relay drain and go to sleep; not for correctness
        e = event()
        await store.append("s", None, [e])
        js = nc.jetstream()
        await eventually(
            lambda: _equal(stream_ids(js, topology), [e.event_id]), "notified publish", within=5
        )


async def test_event_types_without_a_contract_subject_stay_private(
    store: PostgresEventStore, pool: asyncpg.Pool, db_schema: str, nc: Client, topology: Topology
) -> None:
    """An internal event type is kept in the store, not published, and does not block others."""
    private = NewEvent("p-1", "dxtalent.enrollment.InternalNote.v1", {}, dt.datetime.now(dt.UTC))
    public = event()
    await store.append("s", 0, [private, public])
    relay = relay_for(pool, db_schema, nc, topology)
    assert await relay.drain_once() == 2
    assert await stream_ids(nc.jetstream(), topology) == [public.event_id]
    assert await store.event_exists("p-1")


async def test_a_refused_publish_fails_the_batch_and_keeps_it(
    store: PostgresEventStore, pool: asyncpg.Pool, db_schema: str, nc: Client, topology: Topology
) -> None:
    """A subject no stream captures gets JetStream's "no responders" reply instead of an ack:
    the batch fails, its rows stay in the outbox, and a later relay that can route them
    publishes each once, in batches of three."""
    events = [event(i) for i in range(7)]
    await store.append_many([(f"E{i}", 0, [e]) for i, e in enumerate(events)])
    lost = relay_for(pool, db_schema, nc, topology, subjects={TYPE: "dx.nowhere.completed"})
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await lost.drain_once()
    assert await lost.pending() == len(events)
    relay = relay_for(pool, db_schema, nc, topology, batch_size=3)
    assert await relay.drain_once() == len(events)
    assert await stream_ids(nc.jetstream(), topology) == [e.event_id for e in events]
    assert await relay.pending() == 0


async def _equal(got: Awaitable[list[str]], expected: list[str]) -> bool:
    return await got == expected


async def append_in_batches(store: PostgresEventStore, events: list[NewEvent]) -> None:
    for start in range(0, len(events), 50):
        chunk = events[start : start + 50]
        await store.append_many([(f"E{start + i}", None, [e]) for i, e in enumerate(chunk)])


async def test_relay_rides_out_a_nats_restart(
    store: PostgresEventStore,
    pool: asyncpg.Pool,
    db_schema: str,
    own_nats: EmbeddedNats,
    topology: Topology,
) -> None:
    """NATS stops mid-stream and starts again on the same port and data: the running relay
    reconnects by itself; every event is on the stream exactly once."""
    nc = await nats_for(own_nats.url, topology)
    try:
        js = nc.jetstream()
        before, during = [event(i) for i in range(200)], [event(i) for i in range(200)]
        relay = relay_for(pool, db_schema, nc, topology, batch_size=50, publish_timeout=0.5)
        async with running(relay):
            await append_in_batches(store, before)
            await eventually(
                lambda: _equal(stream_ids(js, topology), [e.event_id for e in before]),
                "first events published",
            )
            await asyncio.to_thread(own_nats.stop)
            await append_in_batches(store, during)
            await asyncio.sleep(1.5)  # several publish timeouts pass while NATS is away
            assert await relay.pending() == len(during), "nothing is marked without an ack"
            await asyncio.to_thread(own_nats.start)
            expected = [e.event_id for e in before + during]
            await eventually(lambda: _count(js, topology, len(expected)), "all published")
            await eventually(_empty(relay), "outbox drained")
        ids = await stream_ids(js, topology)
        assert sorted(ids) == sorted(expected)
        assert len(ids) == len(set(ids))
    finally:
        await nc.close()


async def _count(js: JetStreamContext, topology: Topology, n: int) -> bool:
    info = await js.stream_info(topology.stream(EVENTS.name))
    return bool(info.state.messages >= n)


def _empty(relay: OutboxRelay) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await relay.pending() == 0

    return check


async def test_relay_rides_out_a_postgres_restart(
    own_postgres: EmbeddedPostgres,
    nc: Client,
    topology: Topology,
) -> None:
    """PostgreSQL stops mid-stream and starts again: the relay reconnects through the pool,
    listens again (the 60 s poll never fires) and publishes everything, each event once."""
    schema = "relaytest"
    async with asyncpg.create_pool(own_postgres.url, min_size=1, max_size=4) as pool:
        store = PostgresEventStore(pool, schema)
        await store.migrate()
        js = nc.jetstream()
        before, after = [event(i) for i in range(100)], [event(i) for i in range(100)]
        relay = relay_for(pool, schema, nc, topology, batch_size=25, poll_interval=60.0)
        async with running(relay):
            await append_in_batches(store, before)
            await eventually(lambda: _count(js, topology, 100), "first events published")
            await asyncio.to_thread(own_postgres.stop, "immediate")
            await asyncio.sleep(0.5)  # the relay now fails and backs off
            await asyncio.to_thread(own_postgres.start)
            await eventually(lambda: _appended(store, after), "append after restart")
            await eventually(lambda: _count(js, topology, 200), "all published")
            await eventually(_empty(relay), "outbox drained")
        ids = await stream_ids(js, topology)
        assert sorted(ids) == sorted(e.event_id for e in before + after)


async def _appended(store: PostgresEventStore, events: list[NewEvent]) -> bool:
    if not await store.event_exists(events[0].event_id):
        await append_in_batches(store, events)
    return True


async def test_a_batch_reads_only_its_own_events_however_far_the_store_has_grown(
    store: PostgresEventStore, pool: asyncpg.Pool, db_schema: str, nc: Client, topology: Topology
) -> None:
    """With a backlog of a thousand outbox rows late in a grown store, the relay's read looks
    up each row's event by its key: it reads no more events than the batch holds (a plain
    join was planned as a merge join from the store's first event, decision 0255)."""
    await store.append_many([(f"E{i:06d}", None, [event(i)]) for i in range(3_000)])
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        await conn.execute(f'DELETE FROM "{db_schema}".outbox WHERE position <= 2000')
        await conn.execute(f'ANALYZE "{db_schema}".outbox, "{db_schema}".events')
        relay = relay_for(pool, db_schema, nc, topology)
        plan = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {relay._select_sql}",
            500,
            relay._lock_key,
        )
        assert await conn.fetchval("SELECT pg_advisory_unlock($1)", relay._lock_key)
    nodes, read = [json.loads(plan)[0]["Plan"]], 0
    while nodes:
        node = nodes.pop()
        nodes += node.get("Plans", [])
        if node.get("Relation Name") == "events":
            read += node["Actual Rows"] * node["Actual Loops"]
    assert read == 500


async def test_a_batch_turns_off_synchronous_commit_for_its_own_transaction_only(
    store: PostgresEventStore, database_url: str, db_schema: str, nc: Client, topology: Topology
) -> None:
    """The relay's DELETE + COMMIT does not wait for its WAL flush (decision 0260: a lost
    DELETE only publishes its events again, dropped by id); the setting ends with the batch's
    transaction, and its one pooled connection goes back with `synchronous_commit` on."""
    await store.append("E000001", 0, [event(0), event(1)])
    async with asyncpg.create_pool(database_url, min_size=1, max_size=1) as one:
        async with one.acquire() as proxy:
            conn = cast(asyncpg.Connection, proxy)
            await conn.execute("SET synchronous_commit TO on")  # the session's, kept
        relay = relay_for(one, db_schema, nc, topology)
        assert await relay.drain_once() == 2
        assert await relay.pending() == 0
        async with one.acquire() as proxy:
            conn = cast(asyncpg.Connection, proxy)
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
    assert len(await stream_ids(nc.jetstream(), topology)) == 2


@pytest.fixture
async def handing_store(pool: asyncpg.Pool, db_schema: str) -> PostgresEventStore:
    """A store with a hand-over (the wake after COMMIT goes through it)."""
    s = PostgresEventStore(pool, db_schema)
    await s.migrate()
    s.outbox_handover()
    return s


async def test_a_batch_wakes_the_relay_of_its_process_after_commit_without_notify(
    handing_store: PostgresEventStore,
    pool: asyncpg.Pool,
    db_schema: str,
    nc: Client,
    topology: Topology,
) -> None:
    """Inside `wake_relays_after_commit()` (a consumer's batch), an append by a store whose
    relay runs in this process (attached to its hand-over) sends no NOTIFY, and the relay,
    polling only every 60 s, publishes it at once after the COMMIT; an append outside the
    block still notifies (decision 0310)."""
    store = handing_store
    heard: list[str] = []
    js = nc.jetstream()
    relay = relay_for(
        pool, db_schema, nc, topology, poll_interval=60.0, handover=store.outbox_handover()
    )
    async with pool.acquire() as spy, running(relay):
        pool_reset.needs_full_reset(spy)
        channel = outbox_channel(db_schema)

        def listen(*args: Any) -> None:
            heard.append(args[2])

        await spy.add_listener(channel, listen)
        await asyncio.sleep(0.2)  # let the relay drain and go to sleep; not for correctness
        inside, outside = event(1), event(2)
        async with pool.acquire() as proxy:
            conn = cast(asyncpg.Connection, proxy)
            with wake_relays_after_commit():
                async with conn.transaction():
                    await store.append_new([("s", inside)], conn=conn)
        await eventually(
            lambda: _equal(stream_ids(js, topology), [inside.event_id]), "woken publish", within=5
        )
        await store.append("s", None, [outside])
        await eventually(
            lambda: _equal(stream_ids(js, topology), [inside.event_id, outside.event_id]),
            "notified publish",
            within=5,
        )

        async def notified() -> bool:
            return len(heard) > 0

        await eventually(notified, "the outside append's NOTIFY", within=5)
        await asyncio.sleep(0.1)  # a notification of the first append would have come first
        await spy.remove_listener(channel, listen)
    assert heard == [channel]  # the append inside the block sent none


async def failing_batch(store: PostgresEventStore, conn: asyncpg.Connection) -> None:
    with wake_relays_after_commit():
        async with conn.transaction():
            await store.append_new([("s", event(1))], conn=conn)
            raise RuntimeError("the batch failed")


async def test_the_wake_comes_after_commit_and_not_after_a_rollback(
    handing_store: PostgresEventStore,
) -> None:
    """The attached relay's wake runs once the block's transaction committed (the rows are
    visible to the relay), never while it is open, and not at all when the block raised."""
    store = handing_store
    pool = store.pool
    handover = store.outbox_handover()
    seen: list[bool] = []
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)

        def wake() -> None:
            seen.append(conn.is_in_transaction())

        handover.attach(wake)
        try:
            with pytest.raises(RuntimeError):
                await failing_batch(store, conn)
            assert seen == []
            with wake_relays_after_commit():
                async with conn.transaction():
                    await store.append_new([("s", event(2))], conn=conn)
                assert seen == []
            assert seen == [False]
        finally:
            handover.detach(wake)
    assert await store.stream_version("s") == 1

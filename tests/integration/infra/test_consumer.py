"""JetStreamConsumer against real NATS JetStream and PostgreSQL: exactly-once effect,
retries and dead letters, and recovery when either server goes away mid-stream."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats
import pytest
from prometheus_client import REGISTRY

from dxtalent_contracts.events import FieldError
from dxtalent_infra.consumer import (
    ConsumerConfigError,
    ConsumerOptions,
    JetStreamConsumer,
    Subscription,
)
from dxtalent_infra.delivery import Delivery, Handler, RejectMessage
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.nats import nats_broker
from dxtalent_infra.replay import replay
from dxtalent_infra.servers import EmbeddedNats, EmbeddedPostgres
from dxtalent_infra.topology import DEADLETTER, INBOUND, Topology
from tests.support.polling import eventually

SUBJECT = "dx.inbound.completion"
DLQ = "dx.deadletter.inbound"


class ProcessDiedError(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the consumer catches it."""


# --- helpers --------------------------------------------------------------------------------


def fact(key: str, n: int = 0) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": key, "source": "urn:test", "type": "t", "data": {"n": n}}
    ).encode()


async def publish(
    js: Any, topology: Topology, keys: Sequence[str], headers: dict[str, str] | None = None
) -> None:
    """Publish one fact per key (Nats-Msg-Id = key), retrying while NATS reconnects."""
    subject = topology.subject(SUBJECT)
    for start in range(0, len(keys), 250):
        chunk = keys[start : start + 250]
        deadline = time.monotonic() + 30
        while True:
            try:
                await asyncio.gather(
                    *(
                        js.publish(subject, fact(k), headers={"Nats-Msg-Id": k, **(headers or {})})
                        for k in chunk
                    )
                )
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def add_streams(js: Any, topology: Topology, duplicate_window: float = 120.0) -> None:
    for spec in (INBOUND, DEADLETTER):
        await js.add_stream(
            name=topology.stream(spec.name),
            subjects=[topology.subject(s) for s in spec.subjects],
            duplicate_window=duplicate_window,
        )


@dataclass
class Effects:
    """A handler that records one row per applied message, and every attempt it saw."""

    schema: str
    fail: set[str] = field(default_factory=set)
    reject: set[str] = field(default_factory=set)
    delay: float = 0.0
    write_first: bool = False  # write the row, then raise: the savepoint must undo it
    attempts: dict[str, set[int]] = field(default_factory=dict)
    calls: int = 0

    async def handle(self, conn: asyncpg.Connection, d: Delivery) -> None:
        self.calls += 1
        self.attempts.setdefault(d.message_key, set()).add(d.num_delivered)
        if self.write_first:
            await self._insert(conn, d)
        if d.message_key in self.reject:
            raise RejectMessage(
                f"Course of {d.message_key} is unknown.",
                [FieldError(field="data.course_id", problem="unknown course")],
            )
        if d.message_key in self.fail:
            raise RuntimeError("boom")
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.write_first:
            await self._insert(conn, d)

    async def _insert(self, conn: asyncpg.Connection, d: Delivery) -> None:
        await conn.execute(
            f"INSERT INTO {quote_ident(self.schema)}.effects"
            " (message_key, subject, txid) VALUES ($1, $2, txid_current())",
            d.message_key,
            d.subject,
        )

    async def rows(self, pool: asyncpg.Pool) -> tuple[int, int]:
        """(rows, distinct message keys)."""
        row = await pool.fetchrow(
            f"SELECT count(*) AS n, count(DISTINCT message_key) AS k FROM {quote_ident(self.schema)}.effects"
        )
        assert row is not None
        return int(row["n"]), int(row["k"])


async def create_effects(pool: asyncpg.Pool, schema: str) -> Effects:
    q = quote_ident(schema)
    await pool.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
    await pool.execute(
        f"CREATE TABLE {q}.effects (message_key text NOT NULL, subject text NOT NULL, txid bigint)"
    )
    return Effects(schema)


@contextlib.asynccontextmanager
async def running(consumer: JetStreamConsumer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(consumer.run())
    try:
        yield task
    finally:
        await consumer.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 15)


@dataclass
class Env:
    """One test's NATS context, pool, schema, prefix and durable name, and its handler."""

    js: Any
    pool: asyncpg.Pool
    schema: str
    topology: Topology
    effects: Effects
    durable: str

    nats_url: str

    def consumer(
        self,
        *,
        handler: Handler | None = None,
        filter_subjects: Sequence[str] = ("dx.inbound.>",),
        **options: Any,
    ) -> JetStreamConsumer:
        """A consumer on a FastStream broker of its own (its own NATS connection)."""
        if "backoff" in options:
            options["backoff"] = tuple(options["backoff"])
        return JetStreamConsumer(
            nats_broker(self.nats_url, name=self.durable, reconnect_wait_s=0.2),
            self.pool,
            self.schema,
            self.topology,
            Subscription(
                stream=INBOUND.name,
                durable=self.durable,
                handler=handler or self.effects.handle,
                deadletter_subject=DLQ,
                filter_subjects=tuple(filter_subjects),
            ),
            options=ConsumerOptions(**options),
        )

    async def rows(self) -> tuple[int, int]:
        return await self.effects.rows(self.pool)

    async def has_rows(self, n: int) -> bool:
        return (await self.rows())[0] >= n

    async def publish(self, names: Sequence[str], headers: dict[str, str] | None = None) -> None:
        await publish(self.js, self.topology, names, headers)

    async def dead_letters(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []

        async def keep(d: Delivery) -> None:
            out.append(json.loads(d.data))

        await replay(self.js, self.topology, DEADLETTER.name, keep)
        return out

    async def has_dead_letters(self, n: int) -> bool:
        return len(await self.dead_letters()) >= n

    def counter(self, name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"consumer": self.durable, **labels}) or 0.0


def keys(n: int, prefix: str = "m") -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
async def env(
    nats_url: str, pool: asyncpg.Pool, db_schema: str, topology: Topology
) -> AsyncIterator[Env]:
    nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    await add_streams(js, topology)
    effects = await create_effects(pool, db_schema)
    yield Env(js, pool, db_schema, topology, effects, "c" + uuid.uuid4().hex[:10], nats_url)
    await nc.close()


# --- tests ----------------------------------------------------------------------------------


async def test_batches_of_500_apply_2000_messages_once_in_few_transactions(env: Env) -> None:
    """2,000 preloaded messages are applied once each, one transaction per fetched batch.

    How full a batch gets depends on what arrived within the fill window (decision 0110), so
    the count of batches is read from the consumer's own histogram, not assumed."""
    await env.publish(keys(2000))
    consumer = env.consumer()
    async with running(consumer):
        await eventually(lambda: env.has_rows(2000), "2000 rows")
        await eventually(consumer.caught_up, "caught up")
    assert await env.rows() == (2000, 2000)
    transactions = await env.pool.fetchval(
        f"SELECT count(DISTINCT txid) FROM {quote_ident(env.schema)}.effects"
    )
    batches = env.counter("dxtalent_consumer_batch_size_count")
    assert transactions == batches  # one transaction per fetched batch
    assert 4 <= transactions < 2000  # no batch above batch_size, and batches of several
    assert await consumer.last_sequence() == 2000
    assert env.counter("dxtalent_messages_handled_total") == 2000


async def test_consumer_dying_between_commit_and_ack_changes_nothing_on_redelivery(
    nats_url: str, env: Env
) -> None:
    """Messages committed but never acknowledged come back to a new instance and are skipped."""
    await env.publish(keys(300))

    async def die(batch: Sequence[Delivery]) -> None:
        raise ProcessDiedError

    first = env.consumer(batch_size=100, ack_wait=1.0, after_commit=die)
    with pytest.raises(ProcessDiedError):
        await first.run()
    # The first batch holds what arrived within the fill window: up to 100, fewer on a busy
    # machine (decision 0110); each of those is committed once and not acknowledged.
    committed, _ = await env.rows()
    assert 0 < committed <= 100
    assert await env.rows() == (committed, committed)
    calls_before = env.effects.calls

    second = env.consumer(batch_size=100, ack_wait=1.0)
    async with running(second):
        await eventually(lambda: env.has_rows(300), "300 rows")
        await eventually(second.caught_up, "caught up")
    assert await env.rows() == (300, 300)
    assert env.effects.calls - calls_before == 300 - committed  # committed ones not handled again
    assert env.counter("dxtalent_messages_duplicate_total") == committed


async def test_failing_handler_is_retried_then_dead_lettered_and_the_rest_go_on(env: Env) -> None:
    """A handler that keeps raising: retried up to max_deliver, then dead-lettered with reason."""
    env.effects.fail.add("m-2")
    await env.publish(keys(5))
    consumer = env.consumer(max_deliver=3, backoff=[0.05, 0.1])
    async with running(consumer):
        await eventually(lambda: env.has_rows(4), "4 rows")
        await eventually(lambda: env.has_dead_letters(1), "one dead letter")
        await eventually(consumer.caught_up, "caught up")
    assert await env.rows() == (4, 4)
    assert env.effects.attempts["m-2"] == {1, 2, 3}
    [letter] = await env.dead_letters()
    assert letter["type"] == "dxtalent.enrollment.MessageRejected.v1"
    assert letter["id"] == "rejected-m-2"
    assert letter["causationid"] == "m-2"
    data = letter["data"]
    assert data["reason"] == "handler failed after 3 attempts: RuntimeError: boom"
    assert data["subject"] == SUBJECT
    assert base64.b64decode(data["original_base64"]) == fact("m-2")
    assert env.counter("dxtalent_messages_failed_total") == 3
    assert env.counter("dxtalent_messages_dead_lettered_total", cause="max_deliver") == 1


async def test_rejected_message_is_dead_lettered_at_once_with_original_bytes_and_headers(
    env: Env,
) -> None:
    """RejectMessage: no retry; the dead letter keeps bytes, headers, reason and field errors."""
    env.effects.reject.add("m-1")
    await env.publish(keys(3), headers={"X-Origin": "lms"})
    consumer = env.consumer()
    async with running(consumer):
        await eventually(lambda: env.has_dead_letters(1), "one dead letter")
        await eventually(consumer.caught_up, "caught up")
    assert await env.rows() == (2, 2)
    assert env.effects.attempts["m-1"] == {1}
    [letter] = await env.dead_letters()
    data = letter["data"]
    assert data["reason"] == "Course of m-1 is unknown."
    assert data["errors"] == [{"field": "data.course_id", "problem": "unknown course"}]
    assert base64.b64decode(data["original_base64"]) == fact("m-1")
    assert data["original_headers"] == {"Nats-Msg-Id": "m-1", "X-Origin": "lms"}
    assert env.counter("dxtalent_messages_dead_lettered_total", cause="rejected") == 1


async def test_many_bad_messages_in_one_batch_undo_only_their_own_writes(env: Env) -> None:
    """Every 7th message of one batch is rejected after writing: exactly those writes are
    undone, every other message is applied once, each bad one is dead-lettered once."""
    env.effects.reject = {f"m-{i}" for i in range(0, 120, 7)}
    env.effects.write_first = True
    await env.publish(keys(120))
    consumer = env.consumer(batch_size=120)
    async with running(consumer):
        await eventually(lambda: env.has_dead_letters(18), "18 dead letters")
        await eventually(consumer.caught_up, "caught up")
    assert await env.rows() == (102, 102)
    rows = await env.pool.fetch(f"SELECT message_key FROM {quote_ident(env.schema)}.effects")
    assert {r["message_key"] for r in rows} == set(keys(120)) - env.effects.reject
    assert sorted(d["data"]["subject"] for d in await env.dead_letters()) == [SUBJECT] * 18
    assert env.counter("dxtalent_messages_dead_lettered_total", cause="rejected") == 18


async def test_same_message_id_stored_twice_is_applied_once(env: Env) -> None:
    """A fact published again after the de-duplication window is skipped by the inbox,
    whether both copies arrive in one batch or in different batches."""
    env.topology = Topology(prefix=prefix())
    await add_streams(env.js, env.topology, duplicate_window=0.1)
    try:
        await env.publish(["dup", "other"])
        await _publish_beyond_window(env, "dup")
        consumer = env.consumer()
        async with running(consumer):
            await eventually(lambda: env.has_rows(2), "2 rows")
            await eventually(consumer.caught_up, "caught up")
            await _publish_beyond_window(env, "dup")
            await eventually(
                lambda: _at_least(env.counter("dxtalent_messages_duplicate_total"), 2),
                "second duplicate skipped",
            )
            await eventually(consumer.caught_up, "caught up again")
        assert await env.rows() == (2, 2)
    finally:
        for spec in (INBOUND, DEADLETTER):
            with contextlib.suppress(Exception):
                await env.js.delete_stream(env.topology.stream(spec.name))


async def _publish_beyond_window(env: Env, key: str) -> None:
    async def stored() -> bool:
        ack = await env.js.publish(
            env.topology.subject(SUBJECT), fact(key), headers={"Nats-Msg-Id": key}
        )
        return not ack.duplicate

    await eventually(stored, f"{key} stored again")


async def _at_least(value: float, n: float) -> bool:
    return value >= n


async def test_stop_finishes_the_batches_in_flight(env: Env) -> None:
    """stop() during a batch: run() returns once every fetched message is committed and
    acknowledged, and fetches no more."""
    await env.publish(keys(100))
    consumer: JetStreamConsumer

    async def stop_now(batch: Sequence[Delivery]) -> None:
        await consumer.stop()

    consumer = env.consumer(batch_size=20, after_commit=stop_now)
    await asyncio.wait_for(consumer.run(), 15)
    rows, _ = await env.rows()
    assert 0 < rows < 100  # the first batch, however full the fill window made it (0110)
    info = await env.js.consumer_info(env.topology.stream(INBOUND.name), env.durable)
    assert info.ack_floor.stream_seq == rows  # every committed message is acknowledged
    # What the standing pull request had queued and nobody took is dropped unapplied and
    # unacknowledged: at most the request's size (twice the batch size). It is nak'ed, so
    # it comes back at once, not after ack_wait (30 s here).
    unapplied = info.delivered.stream_seq - rows
    assert 0 <= unapplied <= 40
    assert info.num_ack_pending == unapplied
    async with running(env.consumer(batch_size=20)):
        await eventually(lambda: env.has_rows(100), "the rest applied", within=10)


async def test_prepare_is_idempotent_and_updates_the_consumer(env: Env) -> None:
    """Creating the durable consumer twice is harmless; a changed setting is applied."""
    await env.consumer().prepare()
    await env.consumer(ack_wait=12.0).prepare()
    info = await env.js.consumer_info(env.topology.stream(INBOUND.name), env.durable)
    assert info.config.ack_wait == 12.0
    assert info.config.ack_policy == "explicit"


async def test_several_filter_subjects_deliver_only_those_or_are_refused(env: Env) -> None:
    """Two filter subjects: only their messages are handled (nats-server 2.10+); a 2.9 server,
    which would ignore them and deliver everything, is refused with a clear error."""
    for subject in ("dx.inbound.completion", "dx.inbound.employee", "dx.inbound.nomination"):
        key = subject.rsplit(".", 1)[1]
        await env.js.publish(env.topology.subject(subject), fact(key), headers={"Nats-Msg-Id": key})
    consumer = env.consumer(filter_subjects=["dx.inbound.completion", "dx.inbound.employee"])
    version = env.js._nc.connected_server_version
    if (version.major, version.minor) < (2, 10):
        with pytest.raises(ConsumerConfigError, match=r"2\.10 or later"):
            await consumer.prepare()
        return
    async with running(consumer):
        await eventually(lambda: env.has_rows(2), "2 rows")
        await eventually(consumer.caught_up, "caught up")
    assert sorted(env.effects.attempts) == ["completion", "employee"]


async def test_nats_restart_mid_stream_loses_and_duplicates_nothing(
    own_nats: EmbeddedNats, pool: asyncpg.Pool, db_schema: str
) -> None:
    """NATS stopped and started while the consumer works: it reconnects, every fact once."""
    nc = await nats.connect(own_nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    env = Env(
        nc.jetstream(), pool, db_schema, Topology(prefix=prefix()),
        await create_effects(pool, db_schema), "c" + uuid.uuid4().hex[:10], own_nats.url,
    )  # fmt: skip
    try:
        await add_streams(env.js, env.topology)
        await env.publish(keys(1500, "a"))
        env.effects.delay = 0.0005
        consumer = env.consumer(batch_size=100, ack_wait=2.0)
        async with running(consumer):
            await eventually(lambda: env.has_rows(300), "300 rows")
            await asyncio.to_thread(own_nats.stop)
            await asyncio.to_thread(own_nats.start)
            env.effects.delay = 0.0
            await env.publish(keys(1500, "b"))
            await eventually(lambda: env.has_rows(3000), "3000 rows", within=40)
            await eventually(consumer.caught_up, "caught up")
        assert await env.rows() == (3000, 3000)
    finally:
        await nc.close()


async def test_postgres_restart_mid_stream_loses_and_duplicates_nothing(
    own_postgres: EmbeddedPostgres, env: Env
) -> None:
    """PostgreSQL crashes and comes back while the consumer works: every fact applied once."""
    env.pool = await asyncpg.create_pool(own_postgres.url, min_size=1, max_size=2)
    try:
        env.effects = await create_effects(env.pool, env.schema)
        env.effects.delay = 0.0005
        await env.publish(keys(3000))
        consumer = env.consumer(batch_size=100, ack_wait=5.0)
        async with running(consumer):
            await eventually(lambda: env.has_rows(300), "300 rows")
            await asyncio.to_thread(own_postgres.stop, "immediate")
            await asyncio.to_thread(own_postgres.start)
            env.effects.delay = 0.0
            await eventually(lambda: env.has_rows(3000), "3000 rows", within=40)
            await eventually(consumer.caught_up, "caught up")
        assert await env.rows() == (3000, 3000)
        assert env.counter("dxtalent_consumer_errors_total", kind="database") >= 1
    finally:
        await env.pool.close()


@dataclass
class SegmentEffects:
    """A handler with `handle_many`: writes a whole segment's rows, then raises when the
    segment holds a message to reject (so the fallback must undo those writes)."""

    effects: Effects
    segments_applied: int = 0

    async def __call__(self, conn: asyncpg.Connection, d: Delivery) -> None:
        await self.effects.handle(conn, d)

    async def handle_many(self, conn: asyncpg.Connection, ds: Sequence[Delivery]) -> None:
        for d in ds:
            await self.effects._insert(conn, d)
        if any(d.message_key in self.effects.reject for d in ds):
            raise RejectMessage("one of the segment is bad")
        if any(d.message_key in self.effects.fail for d in ds):
            raise RuntimeError("one of the segment fails")
        self.segments_applied += 1


async def test_segments_apply_at_once_and_are_halved_when_one_is_bad(env: Env) -> None:
    """With `handle_many`, clean segments are applied in one call; a segment holding a bad
    message is rolled back whole and re-applied in halves, down to the bad message alone:
    every good message lands once, only the bad ones are dead-lettered, and the handler
    itself sees a few messages, not the whole segment."""
    env.effects.reject = {"m-5", "m-130"}
    handler = SegmentEffects(env.effects)
    await env.publish(keys(200))
    consumer = env.consumer(handler=handler, batch_size=200)
    async with running(consumer):
        await eventually(lambda: env.has_dead_letters(2), "2 dead letters")
        await eventually(consumer.caught_up, "caught up")
    assert await env.rows() == (198, 198)
    assert handler.segments_applied >= 2  # 200 messages in segments of 50: two were clean
    assert sorted(d["id"] for d in await env.dead_letters()) == sorted(
        f"rejected-{k}" for k in env.effects.reject
    )
    # one message at a time, each bad one (and its neighbours in the last halves) only: a
    # segment of 50 is halved 5 times; message by message it would have been 2 x 50 calls
    assert env.effects.calls <= 2 * 6


async def test_halving_gives_the_same_rows_as_one_message_at_a_time(env: Env) -> None:
    """Every 7th message rejected after its segment wrote it, one failing once: halving the
    segments ends with exactly what the message-by-message way gives (the test above it with
    a plain handler): each good message applied once, each bad one dead-lettered once, the
    failing one applied on its redelivery, and nothing of a rolled-back attempt left."""
    env.effects.reject = {f"m-{i}" for i in range(0, 120, 7)}
    env.effects.fail = {"m-60"}
    env.effects.write_first = True
    handler = SegmentEffects(env.effects)
    await env.publish(keys(120))
    consumer = env.consumer(handler=handler, batch_size=120, backoff=(0.5,), max_deliver=100)
    async with running(consumer):
        await eventually(lambda: env.has_dead_letters(18), "18 dead letters")
        await eventually(lambda: env.has_rows(101), "101 rows")
        env.effects.fail = set()
        await eventually(lambda: env.has_rows(102), "the failed one applied on redelivery")
        await eventually(consumer.caught_up, "caught up")
    assert await env.rows() == (102, 102)
    rows = await env.pool.fetch(f"SELECT message_key FROM {quote_ident(env.schema)}.effects")
    assert {r["message_key"] for r in rows} == set(keys(120)) - env.effects.reject
    assert 1 in env.effects.attempts["m-60"]  # failed alone, then applied on redelivery
    assert env.counter("dxtalent_messages_dead_lettered_total", cause="rejected") == 18


@dataclass
class CheckedEffects(SegmentEffects):
    """`SegmentEffects` that also offers `check`: it refuses the messages to reject up front."""

    checked: int = 0

    def check(self, d: Delivery) -> None:
        self.checked += 1
        if d.message_key in self.effects.reject:
            raise RejectMessage(f"Course of {d.message_key} is unknown.")


async def test_a_check_dead_letters_refused_messages_before_the_batch_is_applied_at_once(
    env: Env,
) -> None:
    """With `check`, every 7th message is dead-lettered before any statement and the rest is
    applied in one `handle_many` call: no rolled-back attempt, no message alone."""
    env.effects.reject = {f"m-{i}" for i in range(0, 120, 7)}
    handler = CheckedEffects(env.effects)
    await env.publish(keys(120))
    consumer = env.consumer(handler=handler, batch_size=120)
    async with running(consumer):
        await eventually(lambda: env.has_dead_letters(18), "18 dead letters")
        await eventually(consumer.caught_up, "caught up")
    assert await env.rows() == (102, 102)
    rows = await env.pool.fetch(f"SELECT message_key FROM {quote_ident(env.schema)}.effects")
    assert {r["message_key"] for r in rows} == set(keys(120)) - env.effects.reject
    assert env.effects.calls == 0  # the handler itself never ran: no fallback
    assert handler.checked == 120
    assert env.counter("dxtalent_messages_dead_lettered_total", cause="rejected") == 18

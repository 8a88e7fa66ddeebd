"""Benchmark section: consumer apply rate (JetStream -> one row per message in PostgreSQL).

N messages (valid CourseCompleted facts) are preloaded on a stream of their own; a
`JetStreamConsumer` (batch 500) applies them with a handler that inserts one row per message.
The clock runs from `run()` until the last batch has committed. A second pass rejects every
100th message, which sends batches down the savepoint-per-message path and publishes dead
letters, to show what bad input costs. A third pass is the services' path: the inbound
parser at the edge and a `handle_many` that inserts a whole batch in one statement, so its
CPU figure is mostly the consumer edge's own (nats-py, delivery building, parsing, the inbox
claim, acknowledgements; decision 0275).

Each pass also reports the benchmark process's CPU time per message while it consumed
(`time.process_time`: the consumer is all the process does then). Unlike the rates, it
depends little on what else the shared machine is doing.

    python -m dxtalent_infra.bench_consumer NATS_URL DATABASE_URL [N]    (runs on uvloop)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import nats

from dxtalent_contracts import subjects
from dxtalent_contracts.inbound import CourseCompletedEvent
from dxtalent_contracts.registry import build_event
from dxtalent_infra.consumer import ConsumerOptions, JetStreamConsumer, Subscription
from dxtalent_infra.delivery import Delivery, RejectMessage
from dxtalent_infra.edge import inbound_facts
from dxtalent_infra.logs import configure_logging
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.nats import nats_broker
from dxtalent_infra.topology import DEADLETTER, INBOUND, Topology

BATCH_SIZE = 500


async def bench_consumer(nats_url: str, database_url: str, n: int) -> dict[str, float]:
    """Consumer apply rate in events/s and CPU µs per message: all good input, with 1%
    rejected input, and the services' path (parser + `handle_many`)."""
    loop_name = type(asyncio.get_running_loop()).__module__
    clean, clean_cpu = await _one_pass(nats_url, database_url, n, reject_every=0)
    with_bad, bad_cpu = await _one_pass(nats_url, database_url, n, reject_every=100)
    edge, edge_cpu = await _one_pass(nats_url, database_url, n, reject_every=0, edge=True)
    return {
        "consumer_events_per_s": clean,
        "consumer_cpu_us_per_msg": clean_cpu,
        "consumer_events_per_s_1pct_rejected": with_bad,
        "consumer_cpu_us_per_msg_1pct_rejected": bad_cpu,
        "consumer_events_per_s_parsed_many": edge,
        "consumer_cpu_us_per_msg_parsed_many": edge_cpu,
        "consumer_batch_size": float(BATCH_SIZE),
        "consumer_messages": float(n),
        "consumer_uvloop": 1.0 if loop_name.startswith("uvloop") else 0.0,
    }


async def _one_pass(
    nats_url: str, database_url: str, n: int, *, reject_every: int, edge: bool = False
) -> tuple[float, float]:
    """(messages/s, CPU µs per message) of one pass on fresh streams and a fresh schema."""
    topology = Topology(prefix="b" + uuid.uuid4().hex[:10])
    schema = "bench_" + uuid.uuid4().hex[:10]
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await _preload(js, topology, n)
        table = f"{quote_ident(schema)}.bench_rows"
        await pool.execute(f"CREATE SCHEMA {quote_ident(schema)}")
        await pool.execute(f"CREATE TABLE {table} (message_key text PRIMARY KEY, payload bytea)")
        return await _consume(
            nats_url,
            pool,
            schema=schema,
            topology=topology,
            n=n,
            reject_every=reject_every,
            edge=edge,
        )
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await pool.close()
        for spec in (INBOUND, DEADLETTER):
            await js.delete_stream(topology.stream(spec.name))
        await nc.close()


async def _preload(js: Any, topology: Topology, n: int) -> None:
    for spec in (INBOUND, DEADLETTER):
        await js.add_stream(
            name=topology.stream(spec.name), subjects=[topology.subject(s) for s in spec.subjects]
        )
    subject = topology.subject(CourseCompletedEvent.nats_subject)
    for start in range(0, n, 1000):
        await asyncio.gather(
            *(
                js.publish(subject, _payload(i), headers={"Nats-Msg-Id": f"f-{i}"})
                for i in range(start, min(n, start + 1000))
            )
        )


def _payload(i: int) -> bytes:
    data = {"employee_id": f"E{i % 5000:06d}", "course_id": "DX-101", "completed_on": "2025-06-12"}
    event = build_event(CourseCompletedEvent, event_id=f"f-{i}", source="urn:bench", data=data)
    return event.to_json_bytes()


class _ManyHandler:
    """The services' shape: a whole batch in one statement, one message when it must."""

    def __init__(self, schema: str) -> None:
        table = f"{quote_ident(schema)}.bench_rows"
        self._one = f"INSERT INTO {table} VALUES ($1, $2)"
        self._many = f"INSERT INTO {table} SELECT * FROM unnest($1::text[], $2::bytea[])"

    async def __call__(self, conn: asyncpg.Connection, delivery: Delivery) -> None:
        await conn.execute(self._one, delivery.message_key, delivery.data)

    async def handle_many(self, conn: asyncpg.Connection, batch: Sequence[Delivery]) -> None:
        await conn.execute(self._many, [d.message_key for d in batch], [d.data for d in batch])


async def _consume(
    nats_url: str,
    pool: asyncpg.Pool,
    *,
    schema: str,
    topology: Topology,
    n: int,
    reject_every: int,
    edge: bool,
) -> tuple[float, float]:
    insert = f"INSERT INTO {quote_ident(schema)}.bench_rows VALUES ($1, $2)"
    done = asyncio.Event()
    committed = 0

    async def handler(conn: asyncpg.Connection, delivery: Delivery) -> None:
        if reject_every and delivery.stream_sequence % reject_every == 0:
            raise RejectMessage("benchmark rejects every 100th message")
        await conn.execute(insert, delivery.message_key, delivery.data)

    async def count(batch: Sequence[Delivery]) -> None:
        nonlocal committed
        committed += len(batch)
        if committed >= n:
            done.set()

    consumer = JetStreamConsumer(
        nats_broker(nats_url, name="bench"),
        pool,
        schema,
        topology,
        Subscription(
            stream=INBOUND.name,
            durable="bench",
            handler=_ManyHandler(schema) if edge else handler,
            deadletter_subject=subjects.DEADLETTER_INBOUND,
            parser=inbound_facts if edge else None,
        ),
        options=ConsumerOptions(batch_size=BATCH_SIZE, after_commit=count),
    )
    await consumer.prepare()
    started, cpu_started = time.perf_counter(), time.process_time()
    task = asyncio.create_task(consumer.run())
    await done.wait()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await consumer.stop()
    await task
    return n / elapsed, cpu / n * 1e6


def main(argv: list[str]) -> None:
    import uvloop

    configure_logging(level="error")
    nats_url, database_url = argv[1], argv[2]
    n = int(argv[3]) if len(argv) > 3 else 20_000
    result = uvloop.run(bench_consumer(nats_url, database_url, n))
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv)

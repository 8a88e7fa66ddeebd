"""Benchmark section: consumer apply rate (JetStream -> one row per message in PostgreSQL).

N messages are preloaded on a stream of their own; a `JetStreamConsumer` (batch 500) applies
them with a handler that inserts one row per message. The clock runs from `run()` until the
last batch has committed. A second pass rejects every 100th message, which sends batches down
the savepoint-per-message path and publishes dead letters, to show what bad input costs.

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
from dxtalent_infra.consumer import ConsumerOptions, JetStreamConsumer, Subscription
from dxtalent_infra.delivery import Delivery, RejectMessage
from dxtalent_infra.logs import configure_logging
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.nats import nats_broker
from dxtalent_infra.topology import DEADLETTER, INBOUND, Topology

BATCH_SIZE = 500


async def bench_consumer(nats_url: str, database_url: str, n: int) -> dict[str, float]:
    """Consumer apply rate in events/s, all good input and with 1% rejected input."""
    loop_name = type(asyncio.get_running_loop()).__module__
    clean = await _one_pass(nats_url, database_url, n, reject_every=0)
    with_bad = await _one_pass(nats_url, database_url, n, reject_every=100)
    return {
        "consumer_events_per_s": clean,
        "consumer_events_per_s_1pct_rejected": with_bad,
        "consumer_batch_size": float(BATCH_SIZE),
        "consumer_messages": float(n),
        "consumer_uvloop": 1.0 if loop_name.startswith("uvloop") else 0.0,
    }


async def _one_pass(nats_url: str, database_url: str, n: int, *, reject_every: int) -> float:
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
            nats_url, pool, schema=schema, topology=topology, n=n, reject_every=reject_every
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
    return json.dumps(
        {"specversion": "1.0", "id": f"f-{i}", "source": "urn:bench", "type": "t", "data": data}
    ).encode()


async def _consume(
    nats_url: str, pool: asyncpg.Pool, *, schema: str, topology: Topology, n: int, reject_every: int
) -> float:
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
            handler=handler,
            deadletter_subject=subjects.DEADLETTER_INBOUND,
        ),
        options=ConsumerOptions(batch_size=BATCH_SIZE, after_commit=count),
    )
    await consumer.prepare()
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run())
    await done.wait()
    elapsed = time.perf_counter() - started
    await consumer.stop()
    await task
    return n / elapsed


def main(argv: list[str]) -> None:
    import uvloop

    configure_logging(level="error")
    nats_url, database_url = argv[1], argv[2]
    n = int(argv[3]) if len(argv) > 3 else 20_000
    result = uvloop.run(bench_consumer(nats_url, database_url, n))
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv)

"""The bare single stage `dxtalent bench throughput` compares the system with: the ceiling of
one consume → store → publish hop on the same servers, without the services' machinery.

N facts are preloaded on an input stream of their own; one pull consumer fetches batches of
500 and, per batch, makes one PostgreSQL transaction holding one batched upsert and the
checkpoint (one statement), publishes one output message per fact (pipelined, acks awaited),
then acknowledges the inputs. No parsing beyond the subject, no inbox, no outbox, no
framework. The clock runs from the first fetch until the last batch is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence

import asyncpg
import nats
import nats.errors
from nats.js import api

from dxtalent_infra.migrations import quote_ident

BATCH = 500


async def bare_stage_rate(nats_url: str, database_url: str, messages: Sequence[bytes]) -> float:
    """Facts per second through the bare stage, for `messages` (any bytes) as input."""
    token = "bare" + uuid.uuid4().hex[:8]
    schema = quote_ident(token)
    nc = await nats.connect(nats_url, name="dxtalent-bench-bare")
    js = nc.jetstream()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    in_stream, out_stream = f"{token.upper()}_IN", f"{token.upper()}_OUT"
    try:
        await js.add_stream(name=in_stream, subjects=[f"{token}.in"])
        await js.add_stream(name=out_stream, subjects=[f"{token}.out"])
        await pool.execute(
            f"CREATE SCHEMA {schema};"
            f" CREATE TABLE {schema}.facts (fact_key text PRIMARY KEY, payload bytea NOT NULL);"
            f" CREATE TABLE {schema}.checkpoint (name text PRIMARY KEY, seq bigint NOT NULL)"
        )
        for start in range(0, len(messages), 1000):
            acks = [
                await js.publish_async(f"{token}.in", raw, headers={"Nats-Msg-Id": f"{token}-{i}"})
                for i, raw in enumerate(messages[start : start + 1000], start)
            ]
            await asyncio.wait_for(asyncio.gather(*acks), 300)  # minutes on a busy machine
        sub = await js.pull_subscribe(
            f"{token}.in",
            durable="bare",
            stream=in_stream,
            config=api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=2000),
        )
        return len(messages) / await _consume(js, sub, pool, schema, token, len(messages))
    finally:
        with contextlib.suppress(Exception):
            await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()
        for stream in (in_stream, out_stream):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        await nc.close()


async def _consume(
    js: nats.js.JetStreamContext,
    sub: nats.js.JetStreamContext.PullSubscription,
    pool: asyncpg.Pool,
    schema: str,
    token: str,
    n: int,
) -> float:
    store = (
        f"WITH up AS (INSERT INTO {schema}.facts (fact_key, payload)"
        " SELECT k, p FROM unnest($1::text[], $2::bytea[]) AS t(k, p)"
        " ON CONFLICT (fact_key) DO UPDATE SET payload = EXCLUDED.payload)"
        f" INSERT INTO {schema}.checkpoint AS c VALUES ('bare', $3)"
        " ON CONFLICT (name) DO UPDATE SET seq = GREATEST(c.seq, EXCLUDED.seq)"
    )
    done = 0
    started = time.perf_counter()
    while done < n:
        try:
            msgs = await sub.fetch(BATCH, timeout=1)
        except nats.errors.TimeoutError:
            continue
        keys = [m.headers.get("Nats-Msg-Id", "") if m.headers else "" for m in msgs]
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                store, keys, [m.data for m in msgs], msgs[-1].metadata.sequence.stream
            )
        futures = [
            await js.publish_async(f"{token}.out", m.data, headers={"Nats-Msg-Id": k})
            for m, k in zip(msgs, keys, strict=True)
        ]
        await asyncio.gather(*futures)
        for m in msgs:
            await m.ack()
        done += len(msgs)
    return time.perf_counter() - started

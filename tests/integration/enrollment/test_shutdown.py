"""Stopping a service in the middle of a backlog (what SIGTERM does: `run_service`'s stop
event) leaves nothing committed behind in its outbox: the batch in flight is finished and
committed, and the relay publishes every committed event before the connections close."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import nats
from pydantic import SecretStr

from dxtalent.nats_tools import publish_raw
from dxtalent_enrollment.service import SPEC
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.runtime import run_service, schema_for
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import EVENTS, Topology
from tests.integration.certification.conftest import _drop_schema, free_port
from tests.integration.enrollment.test_facts_http import completion
from tests.support.polling import eventually

FACTS = 3000


async def _count(conn: asyncpg.Connection, schema: str, table: str) -> int:
    count: int = await conn.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.{table}")
    return count


async def _on_stream(nats_url: str, stream: str) -> set[str]:
    """The Nats-Msg-Id of every message in `stream`."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        info = await js.stream_info(stream)
        ids = set()
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            ids.add((msg.headers or {}).get("Nats-Msg-Id", ""))
        return ids
    finally:
        await nc.close()


async def test_a_stop_mid_batch_leaves_the_outbox_empty_and_every_event_on_the_stream(
    nats_url: str, database_url: str, topology: Topology
) -> None:
    """Given enrollment applying a backlog of 3,000 facts in batches of 500, when it is told to
    stop as soon as its first batch has committed, then it stops with fewer than all applied,
    an empty outbox, and every event it committed on DX_EVENTS."""
    settings = Settings(
        provision_streams=True,  # no permissions on this server: it makes its streams
        nats_url=nats_url,
        database_url=database_url,
        prefix=topology.prefix,
        http_port=free_port(),
        api_token=SecretStr("t"),
        batch_size=500,
        catalog=None,
        shutdown_grace_s=20,
    )
    schema = schema_for(settings, SPEC.name)
    stop = asyncio.Event()
    service = asyncio.create_task(run_service(SPEC, settings, stop))
    facts = [json.dumps(completion(f"E{uuid.uuid4().hex[:8]}")).encode() for _ in range(FACTS)]
    conn = await asyncpg.connect(database_url)
    try:

        async def migrated() -> bool:
            return bool(await conn.fetchval("SELECT to_regclass($1)", f"{schema}.events"))

        async def first_batch_committed() -> bool:
            return await _count(conn, schema, "events") > 0

        await eventually(migrated, "enrollment migrated its schema")
        await publish_raw(nats_url, facts, topology)
        await eventually(first_batch_committed, "enrollment committed its first batch")
        stop.set()  # SIGTERM's handler sets this event
        await asyncio.wait_for(service, timeout=30)
        committed = await conn.fetch(f"SELECT event_id FROM {quote_ident(schema)}.events")
        left_in_outbox = await _count(conn, schema, "outbox")
    finally:
        stop.set()
        await conn.close()
    on_stream = await _on_stream(nats_url, topology.stream(EVENTS.name))
    # figures of a run: committed=1887 outbox_after_stop=0 on_stream=1887
    assert 0 < len(committed) < FACTS  # stopped in the middle of the backlog
    assert left_in_outbox == 0
    assert {r["event_id"] for r in committed} <= on_stream
    await _drop_schema(database_url, schema)

"""Stopping a service in the middle of a backlog leaves nothing committed behind in its outbox:
the batch in flight is finished and committed, and the relay publishes every committed event
before the connections close. Once through `run_service`'s stop event in process, once with a
real SIGTERM to `dxtalent serve enrollment` running as a process of its own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import nats
from pydantic import SecretStr

from dxtalent.nats_tools import publish_raw
from dxtalent_enrollment.service import SPEC
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.runtime import run_service, schema_for
from dxtalent_infra.servers import free_port
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import EVENTS, Topology
from tests.integration.certification.conftest import _drop_schema
from tests.integration.enrollment.test_facts_http import completion
from tests.support.polling import eventually

FACTS = 10_000


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
    """Given enrollment applying 10,000 facts in batches of 500 as they are published, when it
    is told to stop as soon as its first batch has committed, then it stops with fewer than all
    applied, an empty outbox, and every event it committed on DX_EVENTS."""
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
        # the stop comes while the facts are still being published: however fast the service,
        # a backlog is left behind it (a backlog of 3,000 published first was once applied
        # whole before the stop)
        publishing = asyncio.create_task(publish_raw(nats_url, facts, topology))
        await eventually(first_batch_committed, "enrollment committed its first batch")
        stop.set()  # SIGTERM's handler sets this event
        await publishing
        await asyncio.wait_for(service, timeout=30)
        committed = await conn.fetch(f"SELECT event_id FROM {quote_ident(schema)}.events")
        left_in_outbox = await _count(conn, schema, "outbox")
    finally:
        stop.set()
        await conn.close()
    on_stream = await _on_stream(nats_url, topology.stream(EVENTS.name))
    assert 0 < len(committed) < FACTS  # stopped in the middle of the backlog
    assert left_in_outbox == 0
    assert {r["event_id"] for r in committed} <= on_stream
    await _drop_schema(database_url, schema)


async def test_sigterm_mid_batch_leaves_the_outbox_empty_and_every_event_on_the_stream(
    nats_url: str, database_url: str, topology: Topology, tmp_path: Path
) -> None:
    """Given `dxtalent serve enrollment` as a process applying 10,000 facts in batches of 500
    as they are published, when it gets SIGTERM as soon as its first batch has committed, then it
    exits 0 within the grace period with fewer than all applied, an empty outbox, and every
    event it committed on DX_EVENTS."""
    settings = Settings(prefix=topology.prefix)
    schema = schema_for(settings, SPEC.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXT_")} | {
        "DXT_NATS_URL": nats_url,
        "DXT_DATABASE_URL": database_url,
        "DXT_PREFIX": topology.prefix,
        "DXT_HTTP_PORT": str(free_port()),
        "DXT_API_TOKEN": "t",
        "DXT_BATCH_SIZE": "500",
        "DXT_PROVISION_STREAMS": "true",  # no permissions on this server: it makes its streams
        "DXT_SHUTDOWN_GRACE_S": "20",
        "DXT_DATA_DIR": str(tmp_path),
    }
    log_path = tmp_path / "enrollment.log"
    log = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dxtalent",
        "serve",
        "enrollment",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    facts = [json.dumps(completion(f"E{uuid.uuid4().hex[:8]}")).encode() for _ in range(FACTS)]
    conn = await asyncpg.connect(database_url)
    try:

        async def migrated() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"enrollment exited with {process.returncode}")
            return bool(await conn.fetchval("SELECT to_regclass($1)", f"{schema}.outbox"))

        async def first_batch_committed() -> bool:
            return await _count(conn, schema, "events") > 0

        await eventually(migrated, "enrollment migrated its schema", within=60)
        publishing = asyncio.create_task(publish_raw(nats_url, facts, topology))  # as above
        await eventually(first_batch_committed, "enrollment committed its first batch")
        process.send_signal(signal.SIGTERM)
        await publishing
        exit_code = await asyncio.wait_for(process.wait(), 30)
        committed = await conn.fetch(f"SELECT event_id FROM {quote_ident(schema)}.events")
        left_in_outbox = await _count(conn, schema, "outbox")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
        await conn.close()
    output = log_path.read_text(errors="replace")
    assert exit_code == 0, output[-2000:]
    on_stream = await _on_stream(nats_url, topology.stream(EVENTS.name))
    assert 0 < len(committed) < FACTS, len(committed)  # stopped in the middle of the backlog
    assert left_in_outbox == 0
    assert {r["event_id"] for r in committed} <= on_stream
    assert "service.stopping" in output
    await _drop_schema(database_url, schema)

"""`intake`: the enrollment service running in-process with `DXT_INGEST_TOKEN` set, against real
servers, with clients for its HTTP doors and readers of what reached NATS and its event store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from nats.js.client import JetStreamContext
from pydantic import SecretStr

from dxtalent_enrollment.service import SPEC
from dxtalent_infra.eventstore import PostgresEventStore
from dxtalent_infra.records import RecordedEvent
from dxtalent_infra.runtime import run_service, schema_for
from dxtalent_infra.servers import free_port
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import INBOUND, Topology
from tests.integration.certification.conftest import _drop_schema, _stop
from tests.support.polling import eventually

INGEST_TOKEN = "ingest-token"
API_TOKEN = "query-token"


@dataclass
class Intake:
    """The running enrollment service: `http` sends the ingest token as a Bearer token."""

    topology: Topology
    schema: str
    js: JetStreamContext
    pool: asyncpg.Pool
    http: httpx.AsyncClient
    base_url: str

    async def caught_up(self) -> None:
        """Until enrollment applied everything on DX_INBOUND and published its events."""

        async def caught_up() -> bool:
            query = {"Authorization": f"Bearer {API_TOKEN}"}
            status = await self.http.get("/v1/status", headers=query)
            return status.json()["caught_up"] is True

        await eventually(caught_up, "enrollment caught up (/v1/status)")

    async def inbound(self) -> list[tuple[dict[str, Any], str | None]]:
        """Every message on DX_INBOUND, in order: the event and its Nats-Msg-Id."""
        name = self.topology.stream(INBOUND.name)
        info = await self.js.stream_info(name)
        out: list[tuple[dict[str, Any], str | None]] = []
        if not info.state.messages:
            return out
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await self.js.get_msg(name, seq)
            out.append((json.loads(msg.data or b""), (msg.headers or {}).get("Nats-Msg-Id")))
        return out

    async def recorded(self, employee_id: str) -> list[RecordedEvent]:
        """The employee's stream in enrollment's event store."""
        store = PostgresEventStore(self.pool, self.schema)
        return await store.read_stream(f"employee-{employee_id}")


@pytest.fixture
async def intake(nats_url: str, database_url: str, topology: Topology) -> AsyncIterator[Intake]:
    """The enrollment service on a free port with both tokens set, until the test ends."""
    port = free_port()
    settings = Settings(
        provision_streams=True,  # no permissions on this server: it makes its streams
        nats_url=nats_url,
        database_url=database_url,
        prefix=topology.prefix,
        http_port=port,
        relay_poll_interval_s=0.2,
        api_token=SecretStr(API_TOKEN),
        ingest_token=SecretStr(INGEST_TOKEN),
        catalog=None,
    )
    schema = schema_for(settings, SPEC.name)
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(SPEC, settings, stop))
    base_url = f"http://127.0.0.1:{port}"
    http = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {INGEST_TOKEN}"})

    async def alive() -> bool:
        return task.done() or (await http.get("/healthz")).status_code == 200

    nc = await nats.connect(nats_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await eventually(alive, "the service answers /healthz")
        if task.done():
            raise AssertionError(f"the service stopped at start: {task.exception()!r}")
        yield Intake(topology, schema, nc.jetstream(), pool, http, base_url)
    finally:
        await _stop(task, stop)
        await http.aclose()
        await pool.close()
        await nc.close()
        await _drop_schema(database_url, schema)

"""`service`: the certification service running in-process for one test, against real servers.

The fixture owns shutdown through `run_service`'s stop event (what SIGTERM sets in a real
process): a graceful stop. The test's schema and streams are removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from dxtalent_certification.service import SPEC
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.runtime import run_service, schema_for
from dxtalent_infra.servers import free_port
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import Topology
from tests.integration.certification.harness import TOKEN, RunningService
from tests.support.polling import eventually


async def _stop(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(task, 20)


async def _drop_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def running(settings: Settings, database_url: str) -> AsyncIterator[RunningService]:
    """The certification service with `settings` (bearer token TOKEN) until the block ends."""
    schema = schema_for(settings, SPEC.name)
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(SPEC, settings, stop))
    http = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.http_port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    async def alive() -> bool:
        return task.done() or (await http.get("/healthz")).status_code == 200

    nc = await nats.connect(settings.nats_url or "")
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await eventually(alive, "the service answers /healthz")
        if task.done():
            raise AssertionError(f"the service stopped at start: {task.exception()!r}")
        yield RunningService(Topology(settings.prefix), schema, nc, nc.jetstream(), pool, http)
    finally:
        await _stop(task, stop)
        await http.aclose()
        await pool.close()
        await nc.close()
        await _drop_schema(database_url, schema)


def service_settings(nats_url: str, database_url: str, topology: Topology) -> Settings:
    """Settings of a test's service: its own prefix, a free port, DXT_API_TOKEN set."""
    return Settings(
        provision_streams=True,  # no permissions on this server: it makes its streams
        nats_url=nats_url,
        database_url=database_url,
        prefix=topology.prefix,
        http_port=free_port(),
        relay_poll_interval_s=0.2,
        api_token=SecretStr(TOKEN),
        catalog=None,
    )


@pytest.fixture
async def service(
    nats_url: str, database_url: str, topology: Topology
) -> AsyncIterator[RunningService]:
    """The certification service on a free port, with DXT_API_TOKEN set, until the test ends."""
    settings = service_settings(nats_url, database_url, topology)
    async with running(settings, database_url) as svc:
        yield svc


@pytest.fixture
async def badges(
    nats_url: str, database_url: str, topology: Topology, tmp_path: Path
) -> AsyncIterator[RunningService]:
    """The certification service issuing credentials with a fresh Ed25519 key; its issuer id
    is its own base URL, so verifiers fetch keys and status lists from it."""
    key = tmp_path / "issuer.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = service_settings(nats_url, database_url, topology)
    settings = settings.model_copy(
        update={
            "credential_key_file": key,
            "credential_issuer": f"http://127.0.0.1:{settings.http_port}",
        }
    )
    async with running(settings, database_url) as svc:
        yield svc

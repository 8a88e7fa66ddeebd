"""A running system per test: the three services as processes on the test servers, under a
prefix of the test's own. Tests talk to it only through NATS and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from dxtalent.stack import LocalStack
from dxtalent_infra.topology import ALL_STREAMS, Topology
from tests.support.servers import ServerUrls, unique_token

INGEST_TOKEN = "e2e-ingest-token"
"""The enrollment service's DXT_INGEST_TOKEN in these tests (its HTTP intake)."""


async def _cleanup(urls: ServerUrls, topology: Topology) -> None:
    with contextlib.suppress(Exception):
        nc = await nats.connect(urls.nats_url, connect_timeout=2, max_reconnect_attempts=0)
        js = nc.jetstream()
        for spec in ALL_STREAMS:
            with contextlib.suppress(Exception):
                await js.delete_stream(topology.stream(spec.name))
        await nc.close()
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(urls.database_url, timeout=5)
        for service in ("enrollment", "certification", "reporting"):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{topology.prefix}_{service}" CASCADE')
        await conn.close()


@pytest.fixture
def system(server_urls: ServerUrls) -> Iterator[LocalStack]:
    """enrollment, certification and reporting running as separate processes."""
    with running_system(server_urls) as stack:
        yield stack


@contextlib.contextmanager
def running_system(server_urls: ServerUrls, **env: str) -> Iterator[LocalStack]:
    """The three services as processes under a fresh prefix, `env` added to their
    environment; everything they made is removed afterwards."""
    topology = Topology(unique_token())
    data_dir = Path(tempfile.mkdtemp(prefix="dxt-e2e-"))
    stack = LocalStack(
        data_dir,
        server_urls.nats_url,
        server_urls.database_url,
        prefix=topology.prefix,
        extra_env={
            "DXT_RELAY_POLL_INTERVAL_S": "0.5",
            "DXT_LOG_LEVEL": "info",
            "DXT_INGEST_TOKEN": INGEST_TOKEN,
            **env,
        },
    )
    stack.start_services()
    try:
        stack.wait_ready(timeout=90, settle_checks=1)
        yield stack
    finally:
        stack.stop()
        asyncio.run(_cleanup(server_urls, topology))
        shutil.rmtree(data_dir, ignore_errors=True)

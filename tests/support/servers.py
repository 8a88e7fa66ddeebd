"""pytest fixtures for real servers: the machine's when `DXT_TEST_*` is set, else embedded.

Order of preference (docs/architecture.md): `DXT_TEST_NATS_URL` / `DXT_TEST_DATABASE_URL`
when set, else testcontainers when a Docker engine answers, else the embedded servers from
PyPI wheels. Every test gets its own database schema and its own stream/subject prefix.
Fault-injection tests take `own_nats` / `own_postgres`: servers of their own to stop and start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import pytest

from dxtalent_infra.servers import EmbeddedNats, EmbeddedPostgres
from dxtalent_infra.topology import ALL_STREAMS, Topology


@dataclass(frozen=True)
class ServerUrls:
    nats_url: str
    database_url: str


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


def _containers(stack: contextlib.ExitStack) -> ServerUrls:
    """NATS and PostgreSQL in containers, for machines with a Docker engine."""
    from testcontainers.nats import NatsContainer
    from testcontainers.postgres import PostgresContainer

    nats_c = stack.enter_context(NatsContainer("nats:2.11", jetstream=True))
    pg = stack.enter_context(PostgresContainer("postgres:17", driver=None))
    return ServerUrls(nats_c.nats_uri(), pg.get_connection_url())


@pytest.fixture(scope="session")
def server_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerUrls]:
    """URLs of one NATS and one PostgreSQL server shared by the session (isolated per test)."""
    nats_url = os.environ.get("DXT_TEST_NATS_URL")
    database_url = os.environ.get("DXT_TEST_DATABASE_URL")
    started: list[EmbeddedNats | EmbeddedPostgres] = []
    stack = contextlib.ExitStack()
    if (nats_url is None or database_url is None) and _docker_answers():
        urls = _containers(stack)
        nats_url = nats_url or urls.nats_url
        database_url = database_url or urls.database_url
    scratch = Path(tempfile.mkdtemp(prefix="dxt-test-servers-"))
    try:
        if nats_url is None:
            nats_server = EmbeddedNats(scratch / "nats").start()
            started.append(nats_server)
            nats_url = nats_server.url
        if database_url is None:
            pg = EmbeddedPostgres(scratch / "pg").start()
            started.append(pg)
            database_url = pg.url
        yield ServerUrls(nats_url, database_url)
    finally:
        for server in reversed(started):
            server.stop()
        stack.close()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def nats_url(server_urls: ServerUrls) -> str:
    return server_urls.nats_url


@pytest.fixture
def database_url(server_urls: ServerUrls) -> str:
    return server_urls.database_url


def unique_token() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
async def topology(nats_url: str) -> AsyncIterator[Topology]:
    """A stream/subject prefix of this test's own; its streams are deleted afterwards."""
    topo = Topology(prefix=unique_token())
    yield topo
    try:
        nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0)
    except Exception:
        return
    js = nc.jetstream()
    for spec in ALL_STREAMS:
        with contextlib.suppress(Exception):
            await js.delete_stream(topo.stream(spec.name))
    await nc.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A small connection pool to the test database."""
    async with asyncpg.create_pool(database_url, min_size=1, max_size=6) as p:
        yield p


@pytest.fixture
async def db_schema(database_url: str) -> AsyncIterator[str]:
    """A PostgreSQL schema of this test's own, dropped afterwards."""
    schema = unique_token()
    yield schema
    try:
        conn = await asyncpg.connect(database_url, timeout=5)
    except Exception:
        return
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A NATS server of this test's own, to stop and start (fault injection)."""
    server = EmbeddedNats(tmp_path / "own-nats").start()
    yield server
    server.stop()


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test's own, to stop and start (fault injection).

    Its data lives outside pytest's temporary tree: a concurrent pytest session resets that
    tree's permissions, which the unprivileged server user needs to traverse."""
    scratch = Path(tempfile.mkdtemp(prefix="dxt-own-pg-"))
    server = EmbeddedPostgres(scratch / "pg").start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)

"""pytest fixtures for real servers, and where they come from.

Order of preference (docs/architecture.md, "Tests and their servers"): `DXT_TEST_NATS_URL` /
`DXT_TEST_DATABASE_URL` when set (a NATS server older than 2.10, which the services refuse,
is replaced by an embedded one, and the summary says so); else containers through testcontainers when a Docker-API
engine answers (`tests.support.containers`: host networking, loopback ports, images from
`DXT_TEST_*_IMAGE`); else the embedded servers from PyPI wheels. A container that cannot start
means embedded servers, with a `ContainerFallbackWarning` naming why; the terminal summary says
where each server came from. Every test gets its own database schema and stream/subject prefix.
Fault-injection tests take `own_nats` / `own_postgres`: servers of their own to stop and start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import urllib.parse
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest

from dxtalent_infra.nats import MIN_SERVER_VERSION
from dxtalent_infra.servers import EmbeddedNats, EmbeddedPostgres
from dxtalent_infra.topology import ALL_STREAMS, Topology
from tests.support import containers


@dataclass(frozen=True)
class ServerUrls:
    nats_url: str
    database_url: str


class ContainerFallbackWarning(UserWarning):
    """Containers were wanted (an engine answered) but did not start: embedded servers instead."""


Embedded = EmbeddedNats | EmbeddedPostgres
_URL_VARS = ("DXT_TEST_NATS_URL", "DXT_TEST_DATABASE_URL")
SOURCES: list[str] = []
"""Where this session's servers came from, one line each (printed in the terminal summary)."""


def _from_containers(
    stack: contextlib.ExitStack, want_nats: bool, want_pg: bool
) -> ServerUrls | None:
    """Container URLs for the servers wanted ("" for the others); None when containers are out."""
    reason = containers.engine_unavailable()
    if reason is not None:
        SOURCES.append(f"no containers: {reason}")
        return None
    specs = [
        spec()
        for spec, wanted in ((containers.nats_spec, want_nats), (containers.postgres_spec, want_pg))
        if wanted
    ]
    try:
        urls = {spec.what: containers.start(stack, spec) for spec in specs}
    except containers.ContainerStartError as exc:
        stack.close()
        message = f"containers did not start, using embedded servers instead: {exc}"
        SOURCES.append(message)
        warnings.warn(ContainerFallbackWarning(message), stacklevel=2)
        return None
    SOURCES.extend(
        f"{spec.what}: testcontainers, image {spec.image} at {spec.url}" for spec in specs
    )
    return ServerUrls(urls.get("NATS", ""), urls.get("PostgreSQL", ""))


def _embedded(started: list[Embedded], what: str, server: Embedded) -> str:
    started.append(server.start())
    SOURCES.append(f"{what}: embedded at {server.url}")
    return server.url


def nats_server_version(url: str) -> tuple[int, ...] | None:
    """The version in the INFO line a NATS server sends on connect; None when unreadable."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 4222), timeout=3) as sock:
            line = sock.makefile("rb").readline()
    except OSError:
        return None
    if not line.startswith(b"INFO "):
        return None
    version = str(json.loads(line[5:]).get("version", ""))
    numbers = [int(n) for n in version.split("-", 1)[0].split(".") if n.isdigit()]
    return tuple(numbers) or None


def _usable_nats(url: str | None) -> str | None:
    """`url` unless it names a NATS server the services would refuse (older than 2.10)."""
    if url is None:
        return None
    version = nats_server_version(url)
    if version is not None and version[:2] < MIN_SERVER_VERSION:
        shown = ".".join(map(str, version))
        SOURCES.append(f"NATS at {url} is {shown}, older than the services accept: not used")
        return None
    return url


@pytest.fixture(scope="session")
def server_urls() -> Iterator[ServerUrls]:
    """URLs of one NATS and one PostgreSQL server shared by the session (isolated per test)."""
    database_url = os.environ.get("DXT_TEST_DATABASE_URL")
    SOURCES.extend(f"{var}={os.environ[var]}" for var in _URL_VARS if os.environ.get(var))
    nats_url = _usable_nats(os.environ.get("DXT_TEST_NATS_URL"))
    started: list[Embedded] = []
    stack = contextlib.ExitStack()
    scratch = Path(tempfile.mkdtemp(prefix="dxt-test-servers-"))
    try:
        if nats_url is None or database_url is None:
            urls = _from_containers(stack, nats_url is None, database_url is None)
            if urls is not None:
                nats_url = nats_url or urls.nats_url
                database_url = database_url or urls.database_url
        nats_url = nats_url or _embedded(started, "NATS", EmbeddedNats(scratch / "nats"))
        database_url = database_url or _embedded(
            started, "PostgreSQL", EmbeddedPostgres(scratch / "pg")
        )
        yield ServerUrls(nats_url, database_url)
    finally:
        for server in reversed(started):
            server.stop()
        stack.close()
        shutil.rmtree(scratch, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, hand this worker's server lines to the controller, which prints them."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["dxt_test_servers"] = SOURCES


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist's controller: collect a finished worker's server lines (each once)."""
    for line in getattr(node, "workeroutput", {}).get("dxt_test_servers", []):
        if line not in SOURCES:
            SOURCES.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where this session's servers came from (nothing when no test needed one)."""
    for line in SOURCES:
        terminalreporter.write_line(f"test servers: {line}")


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

"""Runs one service: the wiring every dxtalent service shares, written once.

A service describes itself with a `ServiceSpec` (its consumers, read-model migrations, HTTP
routes, whether it publishes from an outbox). `run_service` builds everything from `Settings`
(nothing connects at import), serves `/healthz`, `/readyz` and `/metrics` next to the
service's own routes (their bearer token and error bodies: `http_api`), and on SIGTERM/SIGINT
stops taking new batches, finishes the one in flight, lets the relay publish what is
committed, and closes its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from dxtalent_contracts.catalog import Catalog, load_catalog
from dxtalent_infra.consumer import Delivery, JetStreamConsumer
from dxtalent_infra.eventstore import PostgresEventStore
from dxtalent_infra.http_api import validation_failed
from dxtalent_infra.metrics import render_metrics
from dxtalent_infra.migrations import Migration, migrate
from dxtalent_infra.nats import connect_nats
from dxtalent_infra.outbox import OutboxRelay
from dxtalent_infra.settings import Settings
from dxtalent_infra.streams import ensure_streams
from dxtalent_infra.topology import Topology

log = structlog.get_logger(__name__)

Handler = Callable[[asyncpg.Connection, Delivery], Awaitable[None]]


@dataclass
class ServiceContext:
    """What a running service's handlers and routes use; built by `run_service`."""

    name: str
    settings: Settings
    catalog: Catalog
    topology: Topology
    schema: str
    pool: asyncpg.Pool
    nc: NatsClient
    js: JetStreamContext
    store: PostgresEventStore
    source: str
    consumers: list[JetStreamConsumer] = field(default_factory=list)
    relay: OutboxRelay | None = None


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable consumer of a service: which stream and subjects, and its handler."""

    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    deadletter_subject: str
    handler: Callable[[ServiceContext], Handler]


@dataclass(frozen=True)
class ServiceSpec:
    """Everything that makes one service different from another."""

    name: str
    default_port: int
    consumers: tuple[ConsumerSpec, ...]
    migrations: tuple[tuple[str, Sequence[Migration]], ...] = ()
    publishes: bool = False
    routes: Callable[[ServiceContext], APIRouter] | None = None


def schema_for(settings: Settings, service: str) -> str:
    """Each service owns a schema; a prefix (tests, tenants) keeps instances apart."""
    return f"{settings.prefix}_{service}" if settings.prefix else service


async def _connect_postgres(url: str, name: str) -> asyncpg.Pool:
    delay = 0.2
    while True:
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=8,
                server_settings={"application_name": f"dxtalent-{name}"},
            )
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            log.warning("postgres.unavailable", service=name, error=str(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            assert pool is not None
            return pool


async def build_context(spec: ServiceSpec, settings: Settings) -> ServiceContext:
    """Connect, create streams, apply migrations: the service is then ready to run."""
    if settings.nats_url is None or settings.database_url is None:
        raise ValueError(f"{spec.name}: DXT_NATS_URL and DXT_DATABASE_URL must be set to serve")
    catalog = load_catalog(settings.catalog)  # a bad catalog fails now, not after connecting
    topology = Topology(settings.prefix)
    schema = schema_for(settings, spec.name)
    pool = await _connect_postgres(settings.database_url, spec.name)
    nc = await connect_nats(
        settings.nats_url,
        name=f"dxtalent-{spec.name}",
        user=settings.nats_user,
        password=settings.nats_password.get_secret_value() if settings.nats_password else None,
        creds=str(settings.nats_creds) if settings.nats_creds else None,
        tls_ca=str(settings.nats_tls_ca) if settings.nats_tls_ca else None,
    )
    js = nc.jetstream()
    await ensure_streams(
        js,
        topology,
        replicas=settings.stream_replicas,
        duplicate_window_s=settings.duplicate_window_s,
    )
    store = PostgresEventStore(pool, schema)
    if spec.publishes:  # a service that only reads keeps no event store of its own
        await store.migrate()
    async with pool.acquire() as conn:
        for component, migrations in spec.migrations:
            await migrate(cast(asyncpg.Connection, conn), schema, component, migrations)
    ctx = ServiceContext(
        name=spec.name,
        settings=settings,
        catalog=catalog,
        topology=topology,
        schema=schema,
        pool=pool,
        nc=nc,
        js=js,
        store=store,
        source=f"urn:{catalog.municipality.code}:dxtalent:{spec.name}",
    )
    for c in spec.consumers:
        ctx.consumers.append(
            JetStreamConsumer(
                js,
                pool,
                schema,
                topology,
                stream=c.stream,
                durable=c.durable,
                filter_subjects=list(c.filter_subjects),
                handler=c.handler(ctx),
                deadletter_subject=c.deadletter_subject,
                source=ctx.source,
                batch_size=settings.batch_size,
                max_deliver=settings.max_deliver,
            )
        )
    if spec.publishes:
        ctx.relay = OutboxRelay(
            pool,
            schema,
            js,
            topology,
            source=ctx.source,
            batch_size=settings.batch_size,
            poll_interval=settings.relay_poll_interval_s,
        )
    return ctx


async def readiness(ctx: ServiceContext) -> dict[str, Any]:
    """Connected to both servers, every consumer caught up, nothing left in the outbox."""
    checks: dict[str, Any] = {"nats": ctx.nc.is_connected}
    try:
        async with ctx.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
        checks["postgres"] = True
    except Exception:
        checks["postgres"] = False
    for consumer in ctx.consumers:
        try:
            checks[f"lag:{consumer.durable}"] = await consumer.lag()
        except Exception:
            checks[f"lag:{consumer.durable}"] = None
    if ctx.relay is not None:
        try:
            checks["outbox_pending"] = await ctx.relay.pending()
        except Exception:
            checks["outbox_pending"] = None
    ready = (
        checks["nats"]
        and checks["postgres"]
        and all(v == 0 for k, v in checks.items() if k.startswith("lag:") or k == "outbox_pending")
    )
    return {"ready": bool(ready), "checks": checks}


def build_app(spec: ServiceSpec, ctx: ServiceContext) -> FastAPI:
    app = FastAPI(title=f"dxtalent {spec.name}", version="1", docs_url="/docs")
    app.add_exception_handler(RequestValidationError, validation_failed)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": spec.name}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        body = await readiness(ctx)
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        for consumer in ctx.consumers:
            with contextlib.suppress(Exception):
                await consumer.lag()  # refreshes the lag gauge
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    if spec.routes is not None:
        app.include_router(spec.routes(ctx))
    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: `run_service` owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_service(
    spec: ServiceSpec, settings: Settings, stop: asyncio.Event | None = None
) -> None:
    """Run until SIGTERM/SIGINT (or until `stop` is set, for callers that own the signals),
    then shut down gracefully."""
    ctx = await build_context(spec, settings)
    app = build_app(spec, ctx)
    port = settings.http_port if settings.http_port is not None else spec.default_port
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.http_host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(c.run(), name=f"consumer:{c.durable}") for c in ctx.consumers]
    if ctx.relay is not None:
        tasks.append(asyncio.create_task(ctx.relay.run(), name="relay"))
    http = asyncio.create_task(server.serve(), name="http")
    log.info(
        "service.started", service=spec.name, port=port, schema=ctx.schema, prefix=settings.prefix
    )
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, http, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not waiter and task.exception() is not None:
            log.error(
                "service.task_failed",
                service=spec.name,
                task=task.get_name(),
                error=repr(task.exception()),
            )
    log.info("service.stopping", service=spec.name)
    for consumer in ctx.consumers:
        await consumer.stop()
    if ctx.relay is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ctx.relay.drain_once(), timeout=10)
        await ctx.relay.stop()
    server.should_exit = True
    await asyncio.gather(http, *tasks, return_exceptions=True)
    waiter.cancel()
    await ctx.nc.drain()
    await ctx.pool.close()
    log.info("service.stopped", service=spec.name)

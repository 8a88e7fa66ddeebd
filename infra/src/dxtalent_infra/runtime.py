"""Runs one service: the wiring every dxtalent service shares, written once.

A service is a FastStream app (a `NatsBroker`) served with its FastAPI app in one process, the
way FastStream documents for ASGI frameworks: the FastAPI lifespan starts and stops the broker,
and FastStream's AsyncAPI page for the broker is mounted at `/docs/asyncapi` (its document at
`/docs/asyncapi?download=true`... see `asyncapi_document`) next to OpenAPI's `/docs`.

A service describes itself with a `ServiceSpec`: its consumers (`ConsumerSpec`: stream,
subjects, durable, parser, handler), read-model migrations, HTTP routers, whether it publishes
from an outbox. `run_service` builds everything from `Settings` (nothing connects at import):
the streams must exist (`dxtalent provision` creates them with the admin credential; a service
creates them itself only with `DXT_PROVISION_STREAMS=true`), durable consumers are created by
our topology code before the broker starts its subscribers, which only bind to them. It serves `/healthz`, `/readyz` (can serve),
`/v1/status` (lag) and `/metrics` next to the service's own routes (their bearer token and
error bodies: `http_api`), and on SIGTERM/SIGINT stops taking new batches, finishes the one in
flight, lets the relay publish what is committed, and closes its connections, within
`DXT_SHUTDOWN_GRACE_S` (`_shut_down`). Migrations (`migrate_service`) run over
`DXT_MIGRATION_DATABASE_URL` when it is set (the migration role owns the schema and grants the
service role its rights), else over the service's own connection. A service with consumers
prunes its inbox periodically (`inbox_retention`). Once built, the start-up heap is frozen out
of the cyclic garbage collector's reach (`freeze_startup_heap`), and young collections run
less often than Python's default (`set_collector_threshold`, `DXT_GC_THRESHOLD`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import asyncpg
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream.asgi import make_asyncapi_asgi
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from starlette.routing import Route

from dxtalent_contracts.catalog import Catalog, load_catalog
from dxtalent_infra import (
    eventstore,
    inbox,
    inbox_retention,
    metrics,
    migrations,
    pool_reset,
    tracing,
)
from dxtalent_infra.consumer import ConsumerOptions, JetStreamConsumer, Subscription
from dxtalent_infra.delivery import Handler
from dxtalent_infra.edge import Parser
from dxtalent_infra.eventstore import PostgresEventStore
from dxtalent_infra.http_api import validation_failed
from dxtalent_infra.inbox_retention import InboxPruner
from dxtalent_infra.metrics import render_metrics
from dxtalent_infra.migrations import Migration, Privilege, grant_privileges, migrate
from dxtalent_infra.nats import (
    broker_options,
    broker_security,
    connect_broker,
    require_server_version,
)
from dxtalent_infra.outbox import OutboxRelay
from dxtalent_infra.settings import Settings
from dxtalent_infra.status import readiness, service_status, status_router
from dxtalent_infra.streams import await_streams, ensure_streams
from dxtalent_infra.topology import Topology

log = structlog.get_logger(__name__)

ASYNCAPI_PATH = "/docs/asyncapi"


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
    broker: NatsBroker
    consumers: list[JetStreamConsumer] = field(default_factory=list)
    relay: OutboxRelay | None = None
    pruner: InboxPruner | None = None


#: The default `ConsumerSpec.min_batch_interval_s` of the consumers on the path from an
#: inbound fact to LevelCertified (enrollment's and certification's): under a steady load
#: their batches start at most this often and gather what arrived meanwhile, for fewer
#: per-batch costs (decision 0345); a fact after an idle spell is applied at once.
CRITICAL_PATH_BATCH_INTERVAL_S = 0.02


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable consumer of a service: which stream and subjects, how its messages are
    parsed at the edge (`edge`), its handler (built from the running service), and how long
    at least between its batches' starts by default (`min_batch_interval_s`, seconds;
    `DXT_BATCH_INTERVAL_MS` overrides it, see `batch_interval`)."""

    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    deadletter_subject: str
    handler: Callable[[ServiceContext], Handler]
    parser: Parser | None = None
    min_batch_interval_s: float = 0.0


@dataclass(frozen=True)
class ServiceSpec:
    """Everything that makes one service different from another. `routers` are the HTTP
    routers of the service, each built from the running service: add one with one entry.
    `privileges`: what the service role may do on the tables of `migrations` (the event
    store's and the inbox's are added by `migrate_service`)."""

    name: str
    default_port: int
    consumers: tuple[ConsumerSpec, ...]
    migrations: tuple[tuple[str, Sequence[Migration]], ...] = ()
    privileges: tuple[Privilege, ...] = ()
    publishes: bool = False
    routers: tuple[Callable[[ServiceContext], APIRouter], ...] = ()


def service_broker(name: str, settings: Settings) -> NatsBroker:
    """The FastStream broker of service `name` (see `nats.broker_options`)."""
    security = broker_security(
        user=settings.nats_user,
        password=settings.nats_password.get_secret_value() if settings.nats_password else None,
        creds=settings.nats_creds,
        tls_ca=settings.nats_tls_ca,
    )
    return NatsBroker(
        settings.nats_server_list or ["nats://127.0.0.1:4222"],
        **broker_options(
            name=f"dxtalent-{name}", security=security, inbox_prefix=settings.inbox_prefix(name)
        ),
    )


def asyncapi_document(spec_name: str, broker: NatsBroker) -> AsyncAPI:
    """The AsyncAPI document FastStream generates from the service's subscribers."""
    return AsyncAPI(broker, title=f"dxtalent {spec_name}", version="1")


def batch_interval(settings: Settings, c: ConsumerSpec) -> float:
    """Consumer `c`'s `min_batch_interval` in seconds: DXT_BATCH_INTERVAL_MS when set, else
    the service's default in its spec."""
    if settings.batch_interval_ms is None:
        return c.min_batch_interval_s
    return settings.batch_interval_ms / 1000


def register_consumer(ctx: ServiceContext, c: ConsumerSpec) -> JetStreamConsumer:
    """The consumer `c` of the service, its FastStream subscriber registered on `ctx.broker`."""
    metrics.prime_consumer(c.durable)
    return JetStreamConsumer(
        ctx.broker,
        ctx.pool,
        ctx.schema,
        ctx.topology,
        Subscription(
            stream=c.stream,
            durable=c.durable,
            handler=c.handler(ctx),
            deadletter_subject=c.deadletter_subject,
            filter_subjects=c.filter_subjects,
            parser=c.parser,
        ),
        options=ConsumerOptions(
            batch_size=ctx.settings.batch_size,
            max_deliver=ctx.settings.max_deliver,
            min_batch_interval=batch_interval(ctx.settings, c),
            source=ctx.source,
        ),
    )


def schema_for(settings: Settings, service: str) -> str:
    """Each service owns a schema; a prefix (tests, tenants) keeps instances apart."""
    return f"{settings.prefix}_{service}" if settings.prefix else service


async def migrate_service(
    spec: ServiceSpec, conn: asyncpg.Connection, schema: str, service_role: str | None = None
) -> None:
    """Every migration of the service into `schema`, in order (event store, the service's
    own components, consumer inbox), then `service_role`'s rights on what they created
    (`migrations.grant_privileges`; nothing to grant when it is `conn`'s own role). The one
    way a schema is built: at start-up, and for a new schema (a rebuild)."""
    privileges = list(migrations.PRIVILEGES)
    if spec.publishes:  # a service that only reads keeps no event store of its own
        await migrate(conn, schema, eventstore.COMPONENT, eventstore.MIGRATIONS)
        privileges += eventstore.PRIVILEGES
    for component, steps in spec.migrations:
        await migrate(conn, schema, component, steps)
    privileges += spec.privileges
    if spec.consumers:
        await migrate(conn, schema, inbox.COMPONENT, inbox.MIGRATIONS)
        await migrate(conn, schema, inbox_retention.COMPONENT, inbox_retention.MIGRATIONS)
        privileges += inbox.PRIVILEGES
    if service_role is not None:
        await grant_privileges(conn, schema, service_role, privileges)


async def _migrate(spec: ServiceSpec, settings: Settings, pool: asyncpg.Pool, schema: str) -> None:
    """`migrate_service` as the migration role when one is configured, else over `pool`."""
    if settings.migration_database_url is None:
        async with pool.acquire() as conn:
            await migrate_service(spec, cast(asyncpg.Connection, conn), schema)
        return
    service_role: str = await pool.fetchval("SELECT current_user")
    migrator = await connect_postgres(settings.migration_database_url, spec.name, size=1)
    try:
        async with migrator.acquire() as conn:
            await migrate_service(spec, cast(asyncpg.Connection, conn), schema, service_role)
    finally:
        await migrator.close()


def pool_server_settings(name: str) -> dict[str, str]:
    """The session settings of service `name`'s PostgreSQL connections.

    asyncpg prepares every statement; a generic plan chosen while the tables were small
    (= ANY($1) as a sequential scan) would stay cached as they grow, until the next ANALYZE
    of the table. Each execution is planned for its parameters instead: measured at about 5 %
    of the server's statement time (decision 0255), and the generic plans' savings do not
    outweigh a minute of sequential scans on a fresh system
    (tests/integration/infra/test_plan_cache.py)."""
    return {"application_name": f"dxtalent-{name}", "plan_cache_mode": "force_custom_plan"}


async def connect_postgres(url: str, name: str, size: int = 8) -> asyncpg.Pool:
    """Service `name`'s connection pool, retried until PostgreSQL answers. A connection goes
    back to it without asyncpg's reset query unless our code marked it (`pool_reset`)."""
    delay = 0.2
    while True:
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=size,
                server_settings=pool_server_settings(name),
                # no reset query on release unless our code left session state (0285)
                reset=pool_reset.reset_on_release,
            )
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            log.warning("postgres.unavailable", service=name, error=str(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            assert pool is not None
            return pool


async def build_context(spec: ServiceSpec, settings: Settings) -> ServiceContext:
    """Connect, find (or, with `provision_streams`, create) the streams, apply migrations: the
    service is then ready to run."""
    if settings.nats_url is None or settings.database_url is None:
        raise ValueError(f"{spec.name}: DXT_NATS_URL and DXT_DATABASE_URL must be set to serve")
    catalog = load_catalog(settings.catalog)  # a bad catalog fails now, not after connecting
    topology = Topology(settings.prefix)
    schema = schema_for(settings, spec.name)
    pool = await connect_postgres(settings.database_url, spec.name)
    broker = service_broker(spec.name, settings)
    await connect_broker(broker)
    nc: NatsClient = broker.connection
    require_server_version(nc)
    js = nc.jetstream()
    prepare = ensure_streams if settings.provision_streams else await_streams
    await prepare(
        js,
        topology,
        replicas=settings.stream_replicas,
        duplicate_window_s=settings.duplicate_window_s,
    )
    store = PostgresEventStore(pool, schema)
    await _migrate(spec, settings, pool, schema)
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
        broker=broker,
    )
    for c in spec.consumers:
        consumer = register_consumer(ctx, c)
        await consumer.prepare()
        ctx.consumers.append(consumer)
    if spec.consumers:
        ctx.pruner = InboxPruner(
            pool,
            schema,
            service=spec.name,
            retention_s=settings.inbox_retention_s,
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
            handover=store.outbox_handover(),
        )
    return ctx


def build_app(spec: ServiceSpec, ctx: ServiceContext) -> FastAPI:
    """The service's FastAPI app; its lifespan starts and stops the FastStream broker."""
    app = FastAPI(
        title=f"dxtalent {spec.name}", version="1", docs_url="/docs", lifespan=_lifespan(ctx)
    )
    app.add_exception_handler(RequestValidationError, validation_failed)
    tracing.instrument_app(app)  # a no-op unless traces are on
    asyncapi_page = make_asyncapi_asgi(asyncapi_document(spec.name, ctx.broker))
    # an ASGI app at exactly this path (a mount would redirect to a trailing slash)
    app.router.routes.append(Route(ASYNCAPI_PATH, asyncapi_page, include_in_schema=False))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": spec.name}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        body = await readiness(ctx.nc.is_connected, ctx.pool, service=spec.name)
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        # refreshes the lag, backlog and readiness gauges
        await service_status(spec.name, ctx.consumers, ctx.relay)
        await readiness(ctx.nc.is_connected, ctx.pool, service=spec.name)
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    for routes in spec.routers:
        app.include_router(routes(ctx))
    app.include_router(status_router(ctx.settings, spec.name, ctx.consumers, ctx.relay))
    return app


def _lifespan(
    ctx: ServiceContext,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Start: the broker's subscribers (bound to consumers `build_context` prepared), then
    the outbox relay. Stop (see `_shut_down`)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ctx.broker.start()
        relay = asyncio.create_task(ctx.relay.run(), name="relay") if ctx.relay else None
        pruner = asyncio.create_task(ctx.pruner.run(), name="pruner") if ctx.pruner else None
        try:
            yield
        finally:
            if ctx.pruner is not None and pruner is not None:
                await ctx.pruner.stop()
            await _shut_down(ctx, relay)
            if pruner is not None:
                pruner.cancel()  # stopped above; only still running past the grace period
                await asyncio.gather(pruner, return_exceptions=True)

    return lifespan


async def bounded_step(deadline: float, step: str, work: Awaitable[object]) -> None:
    """Run one shutdown step until `deadline` (loop time); past it, log what was cut short."""
    remaining = max(deadline - asyncio.get_running_loop().time(), 0.01)
    try:
        await asyncio.wait_for(work, remaining)
    except TimeoutError:
        log.warning("service.shutdown_grace_exceeded", step=step, grace_left_s=0)
    except Exception as exc:
        log.warning("service.shutdown_step_failed", step=step, error=repr(exc))


async def _shut_down(ctx: ServiceContext, relay: asyncio.Task[None] | None) -> None:
    """Within `DXT_SHUTDOWN_GRACE_S`, in this order: stop fetching and finish, commit and
    acknowledge the batches in flight; let the relay publish everything committed (the
    batches just applied included); then stop the broker, which drains its connection."""
    deadline = asyncio.get_running_loop().time() + ctx.settings.shutdown_grace_s
    for consumer in ctx.consumers:
        await bounded_step(deadline, f"consumer {consumer.durable}", consumer.close())
    if ctx.relay is not None and relay is not None:
        await bounded_step(deadline, "outbox relay", ctx.relay.drain_once())
        await bounded_step(deadline, "outbox relay stop", ctx.relay.stop())
        relay.cancel()  # only still running when the grace period ran out
        await asyncio.gather(relay, return_exceptions=True)
    await ctx.broker.stop()
    log.info("service.shut_down", service=ctx.name)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: `run_service` owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def freeze_startup_heap() -> None:
    """Move every object alive after start-up (modules, pydantic schemas, the app) out of the
    cyclic garbage collector's reach: a handler allocates many short-lived containers per
    batch, and each full collection otherwise walks that whole heap again (a quarter of
    certification's CPU under load, docs/decisions/0245). Nothing is freed by reference
    counting any later than before; only cycles among start-up objects are never collected."""
    gc.collect()
    gc.freeze()


def set_collector_threshold(young: int) -> None:
    """Run a young collection only once `young` tracked objects (allocated net of those freed)
    have accumulated, instead of Python's 700; the older generations' thresholds stay
    Python's. A batch's objects then mostly die by reference counting before any collection
    sees them, instead of being walked, promoted and walked again by the middle and full
    collections (docs/decisions/0340). Only garbage in reference cycles waits longer: at most
    `young` objects of it."""
    _, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, full)


async def run_service(
    spec: ServiceSpec, settings: Settings, stop: asyncio.Event | None = None
) -> None:
    """Run until SIGTERM/SIGINT (or until `stop` is set, for callers that own the signals),
    then shut down gracefully."""
    tracing.configure(spec.name)  # only when OTEL_EXPORTER_OTLP_*ENDPOINT is set
    ctx = await build_context(spec, settings)
    port = settings.http_port if settings.http_port is not None else spec.default_port
    app = build_app(spec, ctx)
    freeze_startup_heap()
    set_collector_threshold(settings.gc_threshold)
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.http_host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    http = asyncio.create_task(server.serve(), name="http")
    log.info(
        "service.started", service=spec.name, port=port, schema=ctx.schema, prefix=settings.prefix
    )
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, http], return_when=asyncio.FIRST_COMPLETED)
    if http.done() and http.exception() is not None:
        log.error(
            "service.task_failed", service=spec.name, task="http", error=repr(http.exception())
        )
    log.info("service.stopping", service=spec.name)
    server.should_exit = True  # the lifespan's end stops the broker (see `_lifecycle`)
    await asyncio.gather(http, return_exceptions=True)
    waiter.cancel()
    with contextlib.suppress(Exception):
        await ctx.broker.stop()  # when the HTTP server never started
    await ctx.pool.close()
    tracing.shutdown()  # export the spans still buffered
    log.info("service.stopped", service=spec.name)

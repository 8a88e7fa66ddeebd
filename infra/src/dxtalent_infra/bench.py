"""`python -m dxtalent_infra.bench` (`make bench-infra`): infrastructure rates on this machine.

Uses the servers of `DXT_NATS_URL` / `DXT_DATABASE_URL` when set, else starts embedded ones in
a temporary directory. Each benchmark is a *section*: an async function
`(nats_url, database_url, n) -> {metric: value}` listed in `SECTIONS`; `main()` runs them in
order and prints one table. Metrics named `*_per_s` are events per second, `*_cpu_us_per_event`
this process's CPU (`time.process_time`) per event: the client's share, steadier on a shared
machine than a rate. To add a section,
write such a function and append it to `SECTIONS`.

    python -m dxtalent_infra.bench [--events N] [--no-uvloop] [--only SECTION]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import uvloop
from nats.aio.client import Client

from dxtalent_infra.bench_consumer import bench_consumer
from dxtalent_infra.eventstore import PostgresEventStore
from dxtalent_infra.logs import configure_logging
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.nats import connect_nats
from dxtalent_infra.outbox import OutboxRelay
from dxtalent_infra.records import NewEvent
from dxtalent_infra.servers import EmbeddedNats, EmbeddedPostgres
from dxtalent_infra.settings import Settings
from dxtalent_infra.streams import ensure_streams
from dxtalent_infra.topology import ALL_STREAMS, Topology

Metrics = dict[str, float]
Section = Callable[[str, str, int], Awaitable[Metrics]]

BATCH_STREAMS = 500  # streams per append_many call
RELAY_BATCH = 500  # outbox relay batch size
WRITERS = 8  # concurrent connections for the concurrent single-append figure


def _event(i: int) -> NewEvent:
    return NewEvent(
        event_id=str(uuid.uuid4()),
        event_type="dxtalent.enrollment.CourseCompleted.v1",
        data={
            "employee_id": f"E{i:06d}",
            "course_id": "DX-101",
            "completed_on": "2025-06-12",
            "fiscal_year": 2025,
            "skills": ["data-literacy"],
        },
        occurred_at=dt.datetime.now(dt.UTC),
        subject=f"E{i:06d}",
        causation_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
    )


@contextlib.asynccontextmanager
async def _store(database_url: str, pool_size: int = 2) -> AsyncIterator[PostgresEventStore]:
    """A migrated event store in a schema of its own, dropped afterwards."""
    schema = "bench_" + uuid.uuid4().hex[:10]
    async with asyncpg.create_pool(database_url, min_size=1, max_size=pool_size) as pool:
        store = PostgresEventStore(pool, schema)
        await store.migrate()
        try:
            yield store
        finally:
            await pool.execute(f"DROP SCHEMA {quote_ident(schema)} CASCADE")


async def _append_single(store: PostgresEventStore, events: list[NewEvent], prefix: str) -> None:
    for i, e in enumerate(events):
        await store.append(f"{prefix}-{i}", 0, [e])


async def _append_batched(store: PostgresEventStore, events: list[NewEvent]) -> None:
    for start in range(0, len(events), BATCH_STREAMS):
        chunk = events[start : start + BATCH_STREAMS]
        await store.append_many([(f"b-{start + i}", 0, [e]) for i, e in enumerate(chunk)])


async def bench_append(nats_url: str, database_url: str, n: int) -> Metrics:
    """Event store appends: one event per transaction (alone and 8 writers), and batched."""
    single_n = max(200, n // 10)
    async with _store(database_url, pool_size=WRITERS) as store:
        events = [_event(i) for i in range(single_n)]
        start = time.perf_counter()
        await _append_single(store, events, "s")
        single = single_n / (time.perf_counter() - start)
        events = [_event(i) for i in range(single_n)]
        per_writer = single_n // WRITERS
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _append_single(store, events[w * per_writer : (w + 1) * per_writer], f"w{w}")
                for w in range(WRITERS)
            )
        )
        concurrent = per_writer * WRITERS / (time.perf_counter() - start)
        events = [_event(i) for i in range(n)]
        start, cpu = time.perf_counter(), time.process_time()
        await _append_batched(store, events)
        batched = n / (time.perf_counter() - start)
        batched_cpu = (time.process_time() - cpu) / n * 1e6
    return {
        "append_single_per_s": single,
        f"append_single_{WRITERS}_writers_per_s": concurrent,
        f"append_many_{BATCH_STREAMS}_streams_per_s": batched,
        "append_many_client_cpu_us_per_event": batched_cpu,
        "append_single_events": float(single_n),
        "append_many_events": float(n),
    }


async def bench_relay(nats_url: str, database_url: str, n: int) -> Metrics:
    """Outbox relay: n committed events drained to JetStream (acks awaited per batch)."""
    topology = Topology(prefix="b" + uuid.uuid4().hex[:10])
    nc = await connect_nats(nats_url, name="dxtalent-bench")
    js = nc.jetstream()
    try:
        await ensure_streams(js, topology)
        async with _store(database_url) as store:
            await _append_batched(store, [_event(i) for i in range(n)])
            relay = OutboxRelay(
                store.pool, store.schema, js, topology, source="urn:bench", batch_size=RELAY_BATCH
            )
            start, cpu = time.perf_counter(), time.process_time()
            published = await relay.drain_once()
            rate = published / (time.perf_counter() - start)
            relay_cpu = (time.process_time() - cpu) / max(published, 1) * 1e6
    finally:
        for spec in ALL_STREAMS:
            with contextlib.suppress(Exception):
                await js.delete_stream(topology.stream(spec.name))
        await nc.close()
    return {
        "relay_publish_per_s": rate,
        "relay_cpu_us_per_event": relay_cpu,
        "relay_events": float(published),
    }


SECTIONS: list[tuple[str, Section]] = [
    ("event store", bench_append),
    ("outbox relay", bench_relay),
    ("consumer", bench_consumer),
]


@dataclass(frozen=True)
class _Servers:
    nats_url: str
    database_url: str
    embedded: bool


@contextlib.contextmanager
def _servers(settings: Settings) -> Iterator[_Servers]:
    """The configured servers, or embedded ones in a temporary directory removed afterwards."""
    if settings.nats_url is not None and settings.database_url is not None:
        yield _Servers(settings.nats_url, settings.database_url, embedded=False)
        return
    data_dir = Path(tempfile.mkdtemp(prefix="dxtalent-bench-"))
    data_dir.chmod(0o755)  # PostgreSQL runs as `nobody` when we are root
    started: list[EmbeddedNats | EmbeddedPostgres] = []
    try:
        nats_url = settings.nats_url
        if nats_url is None:
            started.append(EmbeddedNats(data_dir / "nats").start())
            nats_url = started[-1].url
        database_url = settings.database_url
        if database_url is None:
            started.append(EmbeddedPostgres(data_dir / "pg").start())
            database_url = started[-1].url
        yield _Servers(nats_url, database_url, embedded=True)
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _versions(servers: _Servers) -> tuple[str, str]:
    nc: Client = await connect_nats(servers.nats_url, name="dxtalent-bench")
    nats_version = str(nc.connected_server_version).strip("<>")
    await nc.close()
    conn = await asyncpg.connect(servers.database_url)
    try:
        pg_version = "PostgreSQL " + str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    return nats_version, pg_version


def _format(value: float, metric: str) -> str:
    if "_us_per_" in metric:
        return f"{value:,.1f} µs"
    if metric.endswith("_per_s") or "_per_s_" in metric:
        return f"{value:,.0f} events/s"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


async def _run(servers: _Servers, n: int, only: str | None, loop_name: str) -> None:
    nats_version, pg_version = await _versions(servers)
    out = sys.stdout
    out.write(
        f"dxtalent infra benchmark ({'embedded' if servers.embedded else 'configured'} servers)\n"
        f"  N={n}  append_many={BATCH_STREAMS} streams/call  relay batch={RELAY_BATCH}  "
        f"loop={loop_name}\n  {nats_version}  {pg_version}  Python {platform.python_version()}"
        f"  {platform.machine()}\n\n"
    )
    out.write(f"{'section':<14} {'metric':<40} {'value':>20}\n{'-' * 76}\n")
    for name, section in SECTIONS:
        if only is not None and only != name:
            continue
        metrics = await section(servers.nats_url, servers.database_url, n)
        for metric, value in metrics.items():
            out.write(f"{name:<14} {metric:<40} {_format(value, metric):>20}\n")
        out.flush()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, provide servers, run every section on uvloop (or asyncio)."""
    parser = argparse.ArgumentParser(prog="python -m dxtalent_infra.bench", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events per figure (N)")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    parser.add_argument("--only", choices=[name for name, _ in SECTIONS], help="one section")
    args = parser.parse_args(argv)
    configure_logging(level="error", json=False)
    with _servers(Settings()) as servers:
        if args.no_uvloop:
            asyncio.run(_run(servers, args.events, args.only, "asyncio"))
        else:
            uvloop.run(_run(servers, args.events, args.only, "uvloop"))


if __name__ == "__main__":
    main()

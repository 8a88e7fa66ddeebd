"""Rebuild a service's projection from the event log into a new schema while the old one keeps
serving, then swap atomically (guarantee 5; decision 0220).

The steps, for the service's one durable consumer (its stream, subjects, parser, durable name):

1. **Prepare.** `{live}_rebuild` is created by the service's normal migrations (its read-model
   components and the consumer inbox), and given the live schema's and tables' grants.
2. **Replay.** `DX_EVENTS` is read from its first message with an ephemeral consumer
   (`replay.replay_batches`); each batch is applied to the new schema by the consumer's own
   `BatchApplier` (inbox claims, the handler's savepoint segments, checkpoint): the new schema
   ends up with the inbox and checkpoint of everything it applied, under the live durable's
   name. Nothing is acknowledged and nothing is dead-lettered (the live consumer did that).
3. **Catch up**, without a lock, from where the replay ended, until little is left.
4. **Swap**, in one transaction: lock the live inbox (`EXCLUSIVE`: readers go on, the live
   consumer's next claim waits), apply what is still missing, check that every message the
   live consumer applied is applied in the new schema too, then either rename the schemas
   (`tables` empty: the whole schema is the projection, inbox included) or move the listed
   tables into the live schema (a service whose schema also holds its event store). The
   retired tables get a `CHECK (false) NOT VALID` constraint, so a writer that still holds a
   plan on them fails and retries instead of writing where nobody reads.
5. The retired schema and the scratch schema are dropped (kept with `keep_retired`).

A projection whose handler publishes what changed (certification) sets `follow_live_inbox`:
it then applies only messages the live consumer has applied (settled before the rebuild
started, or in the live inbox), so no fact reaches the new table before the live consumer
has published its consequences; its handler for the rebuild publishes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import structlog
from nats.js.errors import NotFoundError

from dxtalent_contracts.catalog import Catalog
from dxtalent_infra import inbox as inbox_module
from dxtalent_infra import pool_reset
from dxtalent_infra.applier import BatchApplier
from dxtalent_infra.delivery import Delivery, Handler
from dxtalent_infra.edge import parse_all
from dxtalent_infra.eventstore import lock_key
from dxtalent_infra.metrics import HANDLER_SECONDS
from dxtalent_infra.migrations import migrate, quote_ident
from dxtalent_infra.replay import replay_batches
from dxtalent_infra.runtime import ConsumerSpec, ServiceSpec, schema_for
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import Topology

log = structlog.get_logger(__name__)

#: One catch-up round without the lock is enough when it read fewer messages than this.
SMALL_TAIL = 200


class RebuildError(RuntimeError):
    """The rebuild cannot go on; nothing was swapped and the live schema serves as before."""


@dataclass(frozen=True)
class RebuildContext:
    """What a rebuild's handler is built from: it writes to `schema`, the new one."""

    catalog: Catalog
    settings: Settings
    schema: str
    live_schema: str


@dataclass(frozen=True)
class RebuildSpec:
    """How one service's projection is rebuilt (see the module docstring)."""

    service: ServiceSpec
    handler: Callable[[RebuildContext], Handler]
    tables: tuple[str, ...] = ()
    follow_live_inbox: bool = False
    #: Runs twice: before the swap's lock (the bulk of the work) and under it (what changed
    #: since), so it must be idempotent and cheap when little changed.
    before_swap: Callable[[asyncpg.Connection, RebuildContext], Awaitable[None]] | None = None

    @property
    def consumer(self) -> ConsumerSpec:
        """The durable consumer that feeds the projection."""
        return self.service.consumers[0]


@dataclass
class RebuildReport:
    """What a rebuild did: messages read from the stream, applied, skipped; its duration."""

    service: str
    read: int = 0
    applied: int = 0
    skipped: int = 0
    seconds: float = 0.0
    retired: str | None = None
    swapped_at_sequence: int = 0
    locked_seconds: float = 0.0  # how long the live consumer waited on the swap's lock

    @property
    def rate(self) -> float:
        """Messages read per second over the whole rebuild."""
        return self.read / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[int, int], None]
"""Told (messages read so far, messages to read in all) as the rebuild goes."""


@dataclass
class _Counts:
    total: int = 0
    read: int = 0
    last: int = 0
    applied: int = 0
    skipped: int = 0
    progress: Progress | None = field(default=None, repr=False)

    def tell(self) -> None:
        if self.progress is not None:
            self.progress(self.read, max(self.total, self.read))


class Rebuild:
    """One rebuild of `spec`'s projection on the servers of `settings` (see the module)."""

    def __init__(
        self,
        spec: RebuildSpec,
        settings: Settings,
        catalog: Catalog,
        pool: asyncpg.Pool,
        js: Any,
        *,
        progress: Progress | None = None,
        batch_size: int = 1000,
    ) -> None:
        self._spec = spec
        self._pool = pool
        self._js = js
        self._topology = Topology(settings.prefix)
        self._batch = batch_size
        self.live = schema_for(settings, spec.service.name)
        self.new = f"{self.live}_rebuild"
        self.retired = f"{self.live}_retired"
        self._ctx = RebuildContext(catalog, settings, self.new, self.live)
        c = spec.consumer
        self._inbox = inbox_module.PostgresInbox(self.new, c.durable, c.stream)
        self._applier = BatchApplier(
            self._inbox,
            spec.handler(self._ctx),
            max_deliver=1,  # a message that fails is left out (and logged), never retried here
            backoff=(),
            latency=HANDLER_SECONDS.labels(f"{c.durable}-rebuild"),
            log=log.bind(rebuild=spec.service.name),
        )
        self._counts = _Counts(progress=progress)
        self._floor = 0  # messages up to here were settled by the live consumer before we began
        self._reread_from = 0  # the last sequence a catch-up went back to
        self._locked_seconds = 0.0

    async def run(self, *, keep_retired: bool = False) -> RebuildReport:
        """Rebuild, swap, clean up; raises `RebuildError` (nothing swapped) when it cannot."""
        started = time.perf_counter()
        report = RebuildReport(self._spec.service.name)
        async with self._pool.acquire() as proxy:
            guard = cast(asyncpg.Connection, proxy)
            pool_reset.needs_full_reset(guard)  # its session lock goes whatever happens
            key = lock_key(self.live, "rebuild")
            if not await guard.fetchval("SELECT pg_try_advisory_lock($1)", key):
                raise RebuildError(f"another rebuild of {self.live!r} is running")
            try:
                await self._prepare(guard)
                await self._replay(self._counts.last + 1)
                for _ in range(5):  # catch up while the live consumer runs
                    before = self._counts.read
                    await self._replay(await self._catch_up_from(guard))
                    if self._counts.read - before < SMALL_TAIL:
                        break
                if self._spec.before_swap is not None:  # the bulk of it, before the lock
                    await self._spec.before_swap(guard, self._ctx)
                await self._swap(guard, keep_retired)
                await guard.execute(f"DROP SCHEMA IF EXISTS {quote_ident(self.new)} CASCADE")
            finally:
                await guard.execute("SELECT pg_advisory_unlock($1)", key)
        c = self._counts
        report.read, report.applied, report.skipped = c.read, c.applied, c.skipped
        report.swapped_at_sequence = c.last
        report.locked_seconds = self._locked_seconds
        report.retired = self.retired if keep_retired else None
        report.seconds = time.perf_counter() - started
        log.info("rebuild.done", **vars(report), rate=report.rate)
        return report

    # --- steps ---------------------------------------------------------------------------------

    async def _prepare(self, conn: asyncpg.Connection) -> None:
        """A fresh new schema from the service's migrations, with the live grants."""
        if await _schema_exists(conn, self.retired):
            raise RebuildError(
                f"schema {self.retired!r} from an earlier rebuild is still there; drop it "
                f"(DROP SCHEMA {quote_ident(self.retired)} CASCADE) once it is not needed"
            )
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(self.new)} CASCADE")
        for component, migrations in self._spec.service.migrations:
            await migrate(conn, self.new, component, migrations)
        await self._inbox.migrate(conn)
        await _copy_grants(conn, self.live, self.new)
        c = self._spec.consumer
        stream = self._topology.stream(c.stream)
        try:
            info = await self._js.consumer_info(stream, c.durable)
            self._floor = int(info.ack_floor.stream_seq or 0)
        except NotFoundError:
            # no live consumer (a restored system whose service has not run yet): it will
            # read everything itself, so the rebuild takes what the stream holds now
            self._floor = int((await self._js.stream_info(stream)).state.last_seq)
        log.info("rebuild.prepared", schema=self.new, live=self.live, settled_up_to=self._floor)

    async def _replay(self, start: int, conn: asyncpg.Connection | None = None) -> None:
        """Read the stream from `start` and apply it to the new schema."""
        c = self._spec.consumer
        counts = self._counts

        def pending(n: int) -> None:
            counts.total += n
            counts.tell()

        async def apply(batch: Sequence[Delivery]) -> None:
            if conn is None:
                async with self._pool.acquire() as proxy:
                    await self._apply(cast(asyncpg.Connection, proxy), batch)
            else:
                await self._apply(conn, batch)
            counts.read += len(batch)
            counts.last = max(counts.last, batch[-1].stream_sequence)
            counts.tell()

        await replay_batches(
            self._js,
            self._topology,
            c.stream,
            apply,
            filter_subjects=c.filter_subjects,
            batch_size=self._batch,
            start_sequence=start,
            on_pending=pending,
        )

    async def _apply(self, conn: asyncpg.Connection, batch: Sequence[Delivery]) -> None:
        chosen = await self._applied_by_live(conn, batch)
        self._counts.skipped += len(batch) - len(chosen)
        if not chosen:
            return
        deliveries, rejected = parse_all(self._spec.consumer.parser, chosen)
        outcome = await self._applier.apply(conn, deliveries, rejected)
        self._counts.applied += len(outcome.applied)
        self._counts.skipped += len(outcome.dead)

    async def _applied_by_live(
        self, conn: asyncpg.Connection, batch: Sequence[Delivery]
    ) -> Sequence[Delivery]:
        """With `follow_live_inbox`, only what the live consumer applied (module docstring)."""
        if not self._spec.follow_live_inbox:
            return batch
        recent = [d.message_key for d in batch if d.stream_sequence > self._floor]
        if not recent:
            return batch
        if not await _table_exists(conn, self.live, "inbox"):
            return [d for d in batch if d.stream_sequence <= self._floor]
        rows = await conn.fetch(
            f"SELECT message_key FROM {quote_ident(self.live)}.inbox"
            " WHERE durable = $1 AND message_key = ANY($2::text[])",
            self._spec.consumer.durable,
            recent,
        )
        applied = {r[0] for r in rows}
        return [d for d in batch if d.stream_sequence <= self._floor or d.message_key in applied]

    async def _catch_up_from(self, conn: asyncpg.Connection) -> int:
        """The stream sequence to read on from: after the last one read, or earlier when the
        live consumer has since applied a message the replay left out for it."""
        start = self._counts.last + 1
        if not self._spec.follow_live_inbox:
            return start  # everything up to `last` was offered already
        missing = await self._missing(conn, first_only=True)
        if not missing or missing <= self._reread_from:
            return start  # read again once already: its handler fails (the swap will say so)
        self._reread_from = missing
        return min(start, missing)

    async def _missing(self, conn: asyncpg.Connection, *, first_only: bool = False) -> int:
        """Messages in the live inbox but not in the new one (the first one's sequence with
        `first_only`, else how many)."""
        if not await _table_exists(conn, self.live, "inbox"):
            return 0
        live, new = quote_ident(self.live), quote_ident(self.new)
        what = "min(l.stream_sequence)" if first_only else "count(*)"
        value = await conn.fetchval(
            f"SELECT {what} FROM {live}.inbox AS l WHERE l.durable = $1 AND NOT EXISTS"
            f" (SELECT 1 FROM {new}.inbox AS n WHERE n.message_key = l.message_key"
            " AND n.durable = l.durable)",
            self._spec.consumer.durable,
        )
        return int(value or 0)

    async def _swap(self, conn: asyncpg.Connection, keep_retired: bool) -> None:
        """Catch up the last messages under the lock and swap, in one transaction."""
        live, retired = quote_ident(self.live), quote_ident(self.retired)
        async with conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '30s'")
            if await _table_exists(conn, self.live, "inbox"):
                await conn.execute(f"LOCK TABLE {live}.inbox IN EXCLUSIVE MODE")
            locked = time.perf_counter()
            await self._replay(await self._catch_up_from(conn), conn)
            missing = await self._missing(conn)
            if missing:
                raise RebuildError(
                    f"{missing} messages the live consumer applied could not be applied to "
                    f"{self.new!r} (see the log's consumer.handler_gave_up), or the stream no "
                    "longer holds them (a maximum age); nothing was swapped"
                )
            if self._spec.before_swap is not None:
                await self._spec.before_swap(conn, self._ctx)
            if self._spec.tables:
                await swap_tables(conn, self.live, self.new, self.retired, self._spec.tables)
                await self._record_migrations(conn)
            else:
                await swap_schemas(conn, self.live, self.new, self.retired)
        self._locked_seconds = time.perf_counter() - locked
        log.info("rebuild.swapped", live=self.live, at_sequence=self._counts.last)
        if not keep_retired:
            await conn.execute(f"DROP SCHEMA IF EXISTS {retired} CASCADE")

    async def _record_migrations(self, conn: asyncpg.Connection) -> None:
        """The live schema now holds the moved components' tables: record their migrations."""
        live, new = quote_ident(self.live), quote_ident(self.new)
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {live}.schema_migrations (LIKE {new}.schema_migrations"
            " INCLUDING ALL)"
        )
        components = [c for c, _ in self._spec.service.migrations]
        await conn.execute(
            f"INSERT INTO {live}.schema_migrations SELECT * FROM {new}.schema_migrations"
            " WHERE component = ANY($1::text[]) ON CONFLICT DO NOTHING",
            components,
        )


async def swap_schemas(conn: asyncpg.Connection, live: str, new: str, retired: str) -> None:
    """In the caller's transaction: `live` becomes `retired` (its tables refuse writes from
    now on) and `new` becomes `live`."""
    await _refuse_functions_naming(conn, new)
    if await _schema_exists(conn, live):
        await conn.execute(f"ALTER SCHEMA {quote_ident(live)} RENAME TO {quote_ident(retired)}")
        await _fence(conn, retired)
    await conn.execute(f"ALTER SCHEMA {quote_ident(new)} RENAME TO {quote_ident(live)}")


async def swap_tables(
    conn: asyncpg.Connection, live: str, new: str, retired: str, tables: Sequence[str]
) -> None:
    """In the caller's transaction: move `tables` of `live` to `retired` (refusing writes from
    now on) and those of `new` into `live`."""
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(live)}")
    await conn.execute(f"CREATE SCHEMA {quote_ident(retired)}")
    for table in tables:
        if await _table_exists(conn, live, table):
            await conn.execute(
                f"ALTER TABLE {quote_ident(live)}.{quote_ident(table)}"
                f" SET SCHEMA {quote_ident(retired)}"
            )
    await _fence(conn, retired)
    for table in tables:
        await conn.execute(
            f"ALTER TABLE {quote_ident(new)}.{quote_ident(table)} SET SCHEMA {quote_ident(live)}"
        )


async def _schema_exists(conn: asyncpg.Connection, schema: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regnamespace($1) IS NOT NULL", quote_ident(schema)))


async def _table_exists(conn: asyncpg.Connection, schema: str, table: str) -> bool:
    name = f"{quote_ident(schema)}.{quote_ident(table)}"
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


async def _copy_grants(conn: asyncpg.Connection, live: str, new: str) -> None:
    """Give the new schema and its tables the owner and grants of their live namesakes, so
    the service's role reads them after the swap exactly as it read the old ones."""
    if not await _schema_exists(conn, live):
        return
    rows = await conn.fetch(
        """
        SELECT NULL::text AS rel, 'n' AS kind, n.nspowner::regrole::text AS owner,
               a.grantee::regrole::text AS grantee, a.privilege_type, a.is_grantable
        FROM pg_namespace AS n LEFT JOIN LATERAL aclexplode(n.nspacl) AS a ON true
        WHERE n.nspname = $1
        UNION ALL
        SELECT c.relname, c.relkind::text, c.relowner::regrole::text, a.grantee::regrole::text,
               a.privilege_type, a.is_grantable
        FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
        LEFT JOIN LATERAL aclexplode(c.relacl) AS a ON true
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
          AND EXISTS (SELECT 1 FROM pg_class AS c2 JOIN pg_namespace AS n2
                      ON n2.oid = c2.relnamespace WHERE n2.nspname = $2 AND c2.relname = c.relname)
        """,
        live,
        new,
    )
    me = await conn.fetchval("SELECT current_user::text")
    owned: set[str] = set()
    for r in rows:
        if r["kind"] == "n":
            target = f"SCHEMA {quote_ident(new)}"
        else:
            on = "SEQUENCE" if r["kind"] == "S" else "TABLE"
            target = f"{on} {quote_ident(new)}.{quote_ident(r['rel'])}"
        if r["owner"] != me and target not in owned:
            owned.add(target)
            alter = "SCHEMA" if r["kind"] == "n" else "TABLE"
            await conn.execute(f"ALTER {alter} {target.split(' ', 1)[1]} OWNER TO {r['owner']}")
        if r["grantee"] is None or r["privilege_type"] is None:
            continue
        grantee = "PUBLIC" if r["grantee"] == "-" else r["grantee"]
        option = " WITH GRANT OPTION" if r["is_grantable"] else ""
        await conn.execute(f"GRANT {r['privilege_type']} ON {target} TO {grantee}{option}")


async def _fence(conn: asyncpg.Connection, schema: str) -> None:
    """Make every table of a retired schema refuse writes (a stale plan fails, then retries)."""
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema
    )
    for (table,) in tables:
        await conn.execute(
            f"ALTER TABLE {quote_ident(schema)}.{quote_ident(table)}"
            " ADD CONSTRAINT dxt_retired_by_rebuild CHECK (false) NOT VALID"
        )


async def _refuse_functions_naming(conn: asyncpg.Connection, schema: str) -> None:
    """A function body that names the new schema would still name it after the rename."""
    names = await conn.fetch(
        "SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = $1 AND strpos(p.prosrc, $2) > 0",
        schema,
        quote_ident(schema),
    )
    if names:
        raise RebuildError(
            f"functions {[r[0] for r in names]} name schema {schema!r} in their bodies and would "
            "break after the swap; have their migrations avoid naming the schema"
        )

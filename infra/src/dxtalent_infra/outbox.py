"""`OutboxRelay`: publishes committed events from the event store's outbox to JetStream.

Design (architecture guarantee 2, no dual write):

- Appends write an `outbox` row in the same transaction as the event. The relay reads
  outbox rows in position order, publishes them, waits for every JetStream ack and only then
  deletes the rows. A crash anywhere before the DELETE commits leaves the rows in place: they
  are published again, and JetStream drops the copies by `Nats-Msg-Id` (= event id) within
  the stream's duplicate window.
- The outbox says which events to publish, and in which order; with a hand-over
  (`eventstore.OutboxHandover`, decision 0320) the events this process appended are taken
  from memory, by position and checked by id, instead of being read back from `events`;
  the others (other writers, a start-up backlog, anything the hand-over no longer holds)
  are read from `events` by position. Either way the same document; only `data`'s text
  differs (the appender's compact JSON, or jsonb's rendering of the same value).
- Nothing is skipped when transactions commit out of position order: the relay keeps no
  cursor; a row whose transaction commits late (earlier position, later commit) simply shows
  up in a later batch. Order on the wire is therefore visibility order: every batch in
  position order, and an event that commits late goes out after events already published
  (transaction B committed first → B, then A).
- Per stream the order is always version order: an append locks its stream row before
  taking positions, so version n+1 has a higher position and becomes visible only after
  version n; a batch that holds n+1 holds n unless n was published already.
- One batch at a time per schema: each batch holds a session advisory lock from its read
  (which takes it before reading any row) to the end of its DELETE (which releases it in
  the same round trip), so relays in several replicas take turns instead of interleaving
  (which could reorder a stream): two round trips per batch (0320). No transaction is open
  while the acks come back. The read's snapshot can predate the lock: a relay that waited
  for another one may publish rows that one just published, and JetStream drops them by
  id. A batch that fails unlocks (or its connection is reset or given up). The DELETE
  commits without
  waiting for its WAL flush (`synchronous_commit` off for it alone): a crash that loses it
  leaves rows whose events were acked, which are published again and dropped by id, as after
  a relay crash between the acks and the commit; the next batch no longer waits for an fsync
  on a disk the consumers' commits need (0260).
- Publishing is pipelined (`publisher.BatchPublisher`): the batch's messages go out as one
  command, each asks for its JetStream ack on the relay's own reply subscription, and the
  batch waits for all of them at once, with a timeout (0236, 0280).
  After a failed batch (NATS restart mid-batch) an event can be stored once out of order
  relative to another event of the same batch; consumers de-duplicate by id and the domain
  is order-independent (guarantee 4).
- At debug level each batch logs `outbox.published` with where its time went: from the
  NOTIFY that woke the relay to the read, the read, publishing until every ack, DELETE and
  COMMIT (decision 0250), and how many events came from the hand-over.
- Wakes on LISTEN/NOTIFY (appends notify), or directly when a consumer batch of the same
  process committed events through its hand-over (`eventstore.wake_relays_after_commit`:
  no NOTIFY for those, decision 0310), polls every `poll_interval` as a fallback, and
  backs off exponentially up to `max_backoff` while NATS or PostgreSQL is unreachable; the
  pool hands out fresh connections and nats-py reconnects by itself. Keep the streams'
  duplicate window well above `max_backoff` (`streams.ensure_streams` checks it).

An outbox row carries the trace context of the transaction that wrote it (NULL when traces
are off); the relay publishes such an event in a child span and passes it on in the
`traceparent` header (`tracing`).

Event types that have no contract subject (`subjects`) are private to the service: they stay
in the store, are not published, and are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from nats.js.client import JetStreamContext
from pydantic_core import to_json

from dxtalent_contracts.registry import SUBJECT_BY_TYPE
from dxtalent_infra import pool_reset, tracing
from dxtalent_infra.eventstore import (
    OutboxHandover,
    lock_key,
    outbox_channel,
)
from dxtalent_infra.metrics import RELAY_PUBLISHED
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.publisher import BatchPublisher, Outgoing
from dxtalent_infra.records import NewEvent
from dxtalent_infra.topology import Topology

log = structlog.get_logger(__name__)

#: Called with a batch's event ids after JetStream acked them, before the outbox rows are
#: deleted. An exception aborts the batch (the events are published again later).
PublishedHook = Callable[[Sequence[str]], Awaitable[None]]


def cloudevent_bytes(row: asyncpg.Record, source: str) -> bytes:
    """A stored event as a CloudEvents 1.0 structured-mode JSON document.

    `row["data"]` is the stored JSON text; it is spliced in unparsed. The attributes are
    encoded by pydantic-core: the very text `json.dumps(..., separators=(",", ":"),
    ensure_ascii=False)` wrote, in about half the time (a property test holds it to that).
    """
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": row["event_id"],
        "source": source,
        "type": row["event_type"],
    }
    if row["subject"] is not None:
        doc["subject"] = row["subject"]
    occurred: dt.datetime = row["occurred_at"]
    doc["time"] = occurred.isoformat()
    doc["datacontenttype"] = "application/json"
    if row["causation_id"] is not None:
        doc["causationid"] = row["causation_id"]
    if row["correlation_id"] is not None:
        doc["correlationid"] = row["correlation_id"]
    return b"".join((to_json(doc)[:-1], b',"data":', row["data"].encode(), b"}"))


def handed_over_cloudevent_bytes(event: NewEvent, source: str) -> bytes:
    """`cloudevent_bytes` of an event handed over in memory (`OutboxHandover`): the same
    document, attributes byte for byte (`time` in UTC, as PostgreSQL gives it back); `data`
    is the appender's compact JSON in its own key order, where the read from `events` gives
    jsonb's rendering of the same value (decision 0320)."""
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.event_id,
        "source": source,
        "type": event.event_type,
    }
    if event.subject is not None:
        doc["subject"] = event.subject
    doc["time"] = event.occurred_at.astimezone(dt.UTC).isoformat()
    doc["datacontenttype"] = "application/json"
    if event.causation_id is not None:
        doc["causationid"] = event.causation_id
    if event.correlation_id is not None:
        doc["correlationid"] = event.correlation_id
    return b"".join((to_json(doc)[:-1], b',"data":', to_json(event.data), b"}"))


#: One outbox row to publish: its position, event id, event type, trace context and the
#: event itself (a row read from `events`, or the appender's `NewEvent`).
_Item = tuple[int, str, str, str | None, "asyncpg.Record | NewEvent"]


class OutboxRelay:
    """Publishes the committed events of one schema's outbox to JetStream (module docstring)."""

    def __init__(  # noqa: PLR0913 - its options to be grouped like ConsumerOptions (issue 8)
        self,
        pool: asyncpg.Pool,
        schema: str,
        js: JetStreamContext,
        topology: Topology,
        *,
        source: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 30.0,
        publish_timeout: float = 10.0,
        subjects: Mapping[str, str] = SUBJECT_BY_TYPE,
        on_published: PublishedHook | None = None,
        handover: OutboxHandover | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._pool = pool
        self.schema = schema
        self._js = js
        self._topology = topology
        self._source = source
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._publish_timeout = publish_timeout
        self._subjects = subjects
        self._on_published = on_published
        self._lock_key = lock_key(schema, "relay")
        self._channel = outbox_channel(schema)
        s = quote_ident(schema)
        # the read takes the relay's session advisory lock first, once, in the same round
        # trip: an uncorrelated sub-select in WHERE is a one-time filter, evaluated before
        # any row is read ($2, the key)
        locked = "(SELECT true FROM (SELECT pg_advisory_lock($2)) AS l)"
        # the batch's outbox rows first, then each one's event by its key (LIMIT 1 keeps the
        # sub-select from being flattened back into a join): a plain join was planned as a
        # merge join reading `events` from its first position once the outbox held about a
        # thousand rows, a cost that grew with the store (decision 0255)
        self._select_sql = (
            "SELECT o.position, e.event_id, e.event_type, e.data::text AS data, e.subject,"
            " e.occurred_at, e.causation_id, e.correlation_id, o.trace_context"
            f" FROM (SELECT position, trace_context FROM {s}.outbox WHERE {locked}"
            " ORDER BY position LIMIT $1) AS o"
            f" CROSS JOIN LATERAL (SELECT * FROM {s}.events AS x WHERE x.position = o.position"
            " LIMIT 1) AS e ORDER BY o.position"
        )
        self._delete_table = f"{s}.outbox"
        # with a hand-over: the batch's outbox rows alone, then only the events not handed
        # over read from `events` by position (decision 0320)
        self._handover = handover
        self._outbox_sql = (
            f"SELECT position, event_id, trace_context FROM {s}.outbox WHERE {locked}"
            " ORDER BY position LIMIT $1"
        )
        self._events_sql = (
            "SELECT position, event_id, event_type, data::text AS data, subject, occurred_at,"
            f" causation_id, correlation_id FROM {s}.events WHERE position = ANY($1::bigint[])"
        )
        self._count_sql = f"SELECT count(*) FROM {s}.outbox"
        self._unlock_sql = f"SELECT pg_advisory_unlock({int(self._lock_key)})"
        self._wake = asyncio.Event()
        # held by the batch running on the listener's connection: `drain_once` may run beside
        # `run()` (a service's shutdown drains while the loop is in a batch), and a second
        # batch then takes a pooled connection; giving the listener up waits for it
        self._listener_busy = asyncio.Lock()
        self._woken_at: float | None = None  # the first NOTIFY not yet served (debug timings)
        self._stop = asyncio.Event()
        self._done: asyncio.Event | None = None
        self._listener: PoolConnectionProxy[asyncpg.Record] | None = None  # kept for LISTEN
        self._publisher = BatchPublisher(js._nc, timeout=publish_timeout)
        self._wire_subjects: dict[str, str] = {}  # contract subject -> NATS subject

    async def pending(self) -> int:
        """How many committed events wait in the outbox."""
        async with self._pool.acquire() as conn:
            count: int = await conn.fetchval(self._count_sql)
        return count

    async def drain_once(self) -> int:
        """Publish everything committed so far; returns how many events this call published."""
        total = 0
        while True:
            n = await self._relay_batch()
            total += n
            if n < self._batch_size:
                return total

    async def run(self) -> None:
        """Relay until `stop()`: drain, then sleep until notified or `poll_interval` passes.

        Failures (NATS or PostgreSQL away) are logged and retried with exponential backoff;
        `run()` returns only after `stop()` (or raises if cancelled). One `run()` per relay.
        """
        self._done = asyncio.Event()
        backoff, failing = 0.1, False
        log.info("outbox.relay_started", schema=self.schema)
        # this process's consumer batches wake the relay after their COMMIT, without NOTIFY
        if self._handover is not None:
            self._handover.attach(self._notified)
        try:
            while not self._stop.is_set():
                try:
                    await self._ensure_listener()
                    self._wake.clear()
                    await self.drain_once()
                except Exception as exc:
                    failing = True
                    log.warning(
                        "outbox.relay_failed", schema=self.schema, error=repr(exc), retry_in=backoff
                    )
                    await self._sleep(backoff, wake_on_notify=False)
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                if failing:
                    log.info("outbox.relay_recovered", schema=self.schema)
                backoff, failing = 0.1, False
                await self._sleep(self._poll_interval, wake_on_notify=True)
        finally:
            if self._handover is not None:
                self._handover.detach(self._notified)
            await self._release_listener()
            await self._publisher.close()
            self._done.set()
            log.info("outbox.relay_stopped", schema=self.schema)

    async def stop(self) -> None:
        """Ask `run()` to return after the batch in flight, and wait until it has."""
        self._stop.set()
        self._wake.set()
        if self._done is not None:
            await self._done.wait()

    async def _sleep(self, seconds: float, *, wake_on_notify: bool) -> None:
        event = self._wake if wake_on_notify else self._stop
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    def _notified(self, *_: object) -> None:
        if self._woken_at is None:
            self._woken_at = time.perf_counter()
        self._wake.set()

    def _listening(self) -> bool:
        if self._listener is None:
            return False
        try:
            return not self._listener.is_closed()
        except asyncpg.InterfaceError:  # the pool took the broken connection back
            return False

    async def _ensure_listener(self) -> None:
        if self._listening():
            return
        await self._release_listener()
        proxy = await self._pool.acquire()
        pool_reset.needs_full_reset(proxy)  # UNLISTEN * when it goes back, whatever happens
        try:
            await proxy.add_listener(self._channel, self._notified)
            # a lost listener connection wakes the loop, which then reconnects
            proxy.add_termination_listener(self._notified)
        except BaseException:
            await self._pool.release(proxy)
            raise
        self._listener = proxy

    async def _release_listener(self, *, in_batch: bool = False) -> None:
        """Give the listener's connection back; `in_batch` when called by the batch that holds
        it, else after that batch."""
        if in_batch:
            await self._give_up_listener()
            return
        async with self._listener_busy:
            await self._give_up_listener()

    async def _give_up_listener(self) -> None:
        proxy, self._listener = self._listener, None
        if proxy is None:
            return
        with contextlib.suppress(Exception):
            proxy.remove_termination_listener(self._notified)
            await proxy.remove_listener(self._channel, self._notified)
        with contextlib.suppress(Exception):
            await self._pool.release(proxy)

    async def _relay_batch(self) -> int:
        """One batch: lock, read in position order, publish, await acks, delete, unlock.
        Two round trips: the read with the lock, then the DELETE in a transaction of its own
        with the unlock (one simple query; the key and the positions are integers, inlined).
        On the listener's connection while the relay runs (it is the relay's already, and
        marked for asyncpg's full reset), else on a pooled one."""
        began = time.perf_counter()
        woken, self._woken_at = self._woken_at, None
        async with self._batch_connection() as conn:
            try:
                rows, from_memory = await self._read(conn)
                if not rows:
                    await conn.execute(self._unlock_sql)
                    return 0
                read = time.perf_counter()
                event_ids = [r[1] for r in rows]
                try:
                    duplicates = await self._publish(rows)
                except BaseException:
                    log.warning(
                        "outbox.publish_failed",
                        schema=self.schema,
                        count=len(rows),
                        first_event_id=event_ids[0],
                        last_event_id=event_ids[-1],
                        detail="kept in the outbox; published again on the next attempt",
                    )
                    raise
                acked = time.perf_counter()
                if self._on_published is not None:
                    await self._on_published(event_ids)
                positions = ",".join(str(int(r[0])) for r in rows)
                # no WAL flush to wait for: a DELETE lost in a server crash only publishes
                # its events again, which JetStream drops by id (0260)
                await conn.execute(
                    "BEGIN; SET LOCAL synchronous_commit TO off; "
                    f"DELETE FROM {self._delete_table} WHERE position = ANY('{{{positions}}}'"
                    f"::bigint[]); COMMIT; {self._unlock_sql}"
                )
            except BaseException:
                # the session lock must not outlive the batch: unlocked here, or the
                # connection is reset (pooled) or given up (the listener's) on its release
                pool_reset.needs_full_reset(conn)
                try:
                    await conn.execute(f"ROLLBACK; {self._unlock_sql}")
                except BaseException:
                    if cast(object, conn) is self._listener:
                        await self._release_listener(in_batch=True)
                    raise
                raise
        if self._handover is not None:
            self._handover.published([r[0] for r in rows])
        RELAY_PUBLISHED.labels(service=self.schema).inc(len(rows))
        done = time.perf_counter()
        log.debug(
            "outbox.published",
            schema=self.schema,
            count=len(rows),
            duplicates=duplicates,
            from_memory=from_memory,
            # where the time went: from the NOTIFY (when one woke it) to the read, the read
            # (lock and SELECT), publishing until every JetStream ack, DELETE, COMMIT, unlock
            notified_ms=None if woken is None else round((began - woken) * 1000, 2),
            read_ms=round((read - began) * 1000, 2),
            publish_ms=round((acked - read) * 1000, 2),
            commit_ms=round((done - acked) * 1000, 2),
            first_position=rows[0][0],
            last_position=rows[-1][0],
            first_event_id=event_ids[0],
            last_event_id=event_ids[-1],
        )
        return len(rows)

    @contextlib.asynccontextmanager
    async def _batch_connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._listening() and not self._listener_busy.locked():
            async with self._listener_busy:
                yield cast(asyncpg.Connection, self._listener)
            return
        async with self._pool.acquire() as proxy:
            yield cast(asyncpg.Connection, proxy)

    async def _read(self, conn: asyncpg.Connection) -> tuple[list[_Item], int]:
        """The batch's outbox rows in position order with their events, and how many of
        those came from the hand-over."""
        if self._handover is None:
            return [
                (r["position"], r["event_id"], r["event_type"], r["trace_context"], r)
                for r in await conn.fetch(self._select_sql, self._batch_size, self._lock_key)
            ], 0
        staged = self._handover.events
        outbox = await conn.fetch(self._outbox_sql, self._batch_size, self._lock_key)
        handed: list[NewEvent | None] = []
        missing: list[int] = []
        for position, event_id, _ in outbox:
            event = staged.get(position)
            if event is not None and event.event_id == event_id:
                handed.append(event)
            else:
                handed.append(None)
                missing.append(position)
        found: dict[int, asyncpg.Record] = {}
        if missing:
            found = {r["position"]: r for r in await conn.fetch(self._events_sql, missing)}
        items: list[_Item] = []
        for (position, event_id, trace_context), event in zip(outbox, handed, strict=True):
            if event is not None:
                items.append((position, event_id, event.event_type, trace_context, event))
            else:
                row = found[position]
                items.append((position, event_id, row["event_type"], trace_context, row))
        return items, len(items) - len(missing)

    async def _publish(self, rows: Sequence[_Item]) -> int:
        """Publish `rows` in order, one batch of the relay's `BatchPublisher` (pipelined, one
        command, every ack awaited: decisions 0236, 0280); returns how many JetStream saw as
        duplicates."""
        routed: list[tuple[_Item, str]] = []
        unroutable: list[str] = []
        for row in rows:
            contract_subject = self._subjects.get(row[2])
            if contract_subject is None:
                unroutable.append(row[1])
            else:
                routed.append((row, contract_subject))
        if unroutable:
            log.error(
                "outbox.unroutable",
                schema=self.schema,
                reason="event type has no contract subject; kept in the store only",
                event_ids=unroutable,
            )
        if not routed:
            return 0
        spans: list[Any] = []  # tracing: each row's publish span, when it carries a trace
        failure: BaseException | None = None
        try:
            messages: list[Outgoing] = []
            source = self._source
            for (_, event_id, _, trace_context, event), contract_subject in routed:
                extra: dict[str, str] = {}
                if trace_context is not None:
                    spans.append(
                        tracing.publish_span(contract_subject, event_id, trace_context, extra)
                    )
                subject = self._wire_subject(contract_subject)
                body = (
                    handed_over_cloudevent_bytes(event, source)
                    if isinstance(event, NewEvent)
                    else cloudevent_bytes(event, source)
                )
                messages.append((subject, event_id, body, extra))
            return sum(await self._publisher.publish(messages))
        except BaseException as exc:
            failure = exc
            raise
        finally:
            tracing.end_spans(spans, failure)

    def _wire_subject(self, contract_subject: str) -> str:
        """The subject an event type is published on (worked out once per type)."""
        subject = self._wire_subjects.get(contract_subject)
        if subject is None:
            subject = self._wire_subjects[contract_subject] = self._topology.subject(
                contract_subject
            )
        return subject

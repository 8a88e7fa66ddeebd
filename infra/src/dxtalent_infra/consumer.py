"""Durable JetStream pull consumer with an exactly-once effect on PostgreSQL (guarantees 3, 6, 7).

A fetched batch (the next one is fetched meanwhile) is applied in one database transaction by
`inbox.BatchApplier`, handlers running in stream order; only after COMMIT are the messages
acknowledged, dead letters published (awaited) before their originals are acknowledged, and
retried messages nak'ed with a backoff delay.

`max_deliver` is enforced here from each message's delivery count, and the server-side limit is
left unlimited on purpose: a server that gives up on its own would silently drop a message whose
last attempt died with the process or during a database outage, before it reached the
dead-letter subject. Database or NATS outages never consume attempts: the batch is kept,
marked in progress and applied again until the database answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import asyncpg
import nats.errors
import structlog
from nats.js import api

from dxtalent_contracts.envelope import CONTENT_TYPE
from dxtalent_contracts.events import FieldError, MessageRejected, MessageRejectedEvent
from dxtalent_infra import metrics
from dxtalent_infra.inbox import (
    MAX_EVENT_ID,
    BatchApplier,
    BatchOutcome,
    DeadLetter,
    Delivery,
    Handler,
    PostgresInbox,
    RejectMessage,
    trace_ids,
)
from dxtalent_infra.topology import Topology

__all__ = [
    "AfterCommit",
    "ConsumerConfigError",
    "Delivery",
    "Handler",
    "JetStreamConsumer",
    "RejectMessage",
    "dead_letter_event",
    "delivery_from_msg",
    "set_filter_subjects",
]

log = structlog.get_logger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"

AfterCommit = Callable[[Sequence[Delivery]], Awaitable[None]]


class ConsumerConfigError(ValueError):
    """The consumer cannot be set up as asked on this server; retrying will not help."""


def delivery_from_msg(msg: Any, topology: Topology, stream: str) -> Delivery:
    """A JetStream message of contract stream `stream` as a `Delivery`."""
    md = msg.metadata
    headers: dict[str, str] = msg.headers or {}
    seq: int = md.sequence.stream
    return Delivery(
        subject=topology.contract_subject(msg.subject),
        data=msg.data,
        headers=headers,
        stream_sequence=seq,
        num_delivered=md.num_delivered,
        message_key=headers.get(MSG_ID_HEADER) or f"{stream}:{seq}",
        received_at=md.timestamp,
    )


def set_filter_subjects(js: Any, config: api.ConsumerConfig, wire_subjects: Sequence[str]) -> None:
    """Put the filter on `config`. Several subjects need nats-server 2.10+; 2.9 would silently
    ignore them and deliver the whole stream, so that is refused here."""
    if len(wire_subjects) == 1:
        config.filter_subject = wire_subjects[0]
    elif wire_subjects:
        version = js._nc.connected_server_version
        if (version.major, version.minor) < (2, 10):
            raise ConsumerConfigError(
                f"nats-server {version} ignores several filter subjects {list(wire_subjects)}; "
                "use one subject (a wildcard) or nats-server 2.10 or later"
            )
        config.filter_subjects = list(wire_subjects)


def dead_letter_event(
    delivery: Delivery,
    *,
    reason: str,
    errors: Sequence[FieldError],
    source: str,
    now: dt.datetime,
) -> MessageRejectedEvent:
    """The `MessageRejected` dead letter of `delivery`; its id is derived from the message key,
    so publishing it twice is de-duplicated by JetStream."""
    event_id = f"rejected-{delivery.message_key}"
    if len(event_id) > MAX_EVENT_ID:
        event_id = "rejected-sha256-" + hashlib.sha256(delivery.message_key.encode()).hexdigest()
    ids = trace_ids(delivery.data)
    original_id = ids.get("event_id")
    return MessageRejectedEvent(
        specversion="1.0",
        id=event_id,
        source=source,
        type="dxtalent.enrollment.MessageRejected.v1",
        time=now,
        causationid=original_id,
        correlationid=ids.get("correlation_id", original_id),
        data=MessageRejected(
            subject=delivery.subject,
            reason=reason,
            errors=list(errors),
            original_base64=base64.b64encode(delivery.data).decode("ascii"),
            original_headers=dict(delivery.headers),
            received_at=delivery.received_at,
        ),
    )


class JetStreamConsumer:
    """A durable JetStream pull consumer that applies messages to PostgreSQL exactly once.

    `handler(conn, delivery)` runs inside the batch's transaction and must keep its effects in
    that transaction: it may run more than once for a message (its savepoint segment is
    re-applied when a later message in it fails), and only the run that commits counts. Raising `RejectMessage` dead-letters the
    message at once; any other exception retries it with `backoff` delays, and after
    `max_deliver` attempts dead-letters it with the exception as the reason.

    `after_commit` is a test seam called after COMMIT and before any acknowledgement.
    """

    def __init__(
        self,
        js: Any,
        pool: asyncpg.Pool,
        schema: str,
        topology: Topology,
        *,
        stream: str,
        durable: str,
        handler: Handler,
        deadletter_subject: str,
        filter_subjects: Sequence[str] = (),
        batch_size: int = 500,
        max_deliver: int = 5,
        backoff: Sequence[float] = (0.5, 2.0, 10.0, 30.0),
        ack_wait: float = 30.0,
        fetch_timeout: float = 1.0,
        source: str | None = None,
        after_commit: AfterCommit | None = None,
    ) -> None:
        if batch_size < 1 or max_deliver < 1:
            raise ValueError("batch_size and max_deliver must be at least 1")
        self._js = js
        self._pool = pool
        self._topology = topology
        self._stream = stream
        self._stream_name = topology.stream(stream)
        self._durable = durable
        self._deadletter_subject = topology.subject(deadletter_subject)
        self._filters = [topology.subject(s) for s in filter_subjects]
        self._batch_size = batch_size
        self._ack_wait = ack_wait
        self._fetch_timeout = fetch_timeout
        self._source = source or f"urn:dxtalent:consumer:{durable}"
        self._after_commit = after_commit
        self._hold_max = max(0.1, min(5.0, ack_wait / 3))
        self._inbox = PostgresInbox(schema, durable, stream)
        self._stop = asyncio.Event()
        self._sub: Any = None
        self._lag_checked = 0.0
        self._log = log.bind(consumer=durable, stream=self._stream_name)
        self._handled = metrics.MESSAGES_HANDLED.labels(durable)
        self._duplicates = metrics.MESSAGES_DUPLICATE.labels(durable)
        self._failed = metrics.MESSAGES_FAILED.labels(durable)
        self._lag = metrics.CONSUMER_LAG.labels(durable)
        self._batches = metrics.BATCH_SIZE.labels(durable)
        self._applier = BatchApplier(
            self._inbox,
            handler,
            max_deliver=max_deliver,
            backoff=backoff,
            latency=metrics.HANDLER_SECONDS.labels(durable),
            log=self._log,
        )
        self._batch_seconds = metrics.BATCH_SECONDS.labels(durable)

    # --- lifecycle ---------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Apply the inbox migrations and create or update the durable consumer (idempotent)."""
        async with self._pool.acquire(timeout=10) as conn:
            await self._inbox.migrate(cast(asyncpg.Connection, conn))
        await self._ensure_consumer()

    async def _ensure_consumer(self) -> None:
        config = api.ConsumerConfig(
            name=self._durable,
            durable_name=self._durable,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            max_deliver=-1,  # enforced here, see the module docstring
            max_ack_pending=max(1000, 4 * self._batch_size),
        )
        set_filter_subjects(self._js, config, self._filters)
        await self._js.add_consumer(self._stream_name, config=config)

    async def run(self) -> None:
        """Consume until `stop()`; batches in flight are finished first. Reconnects by itself."""
        if not await self._connect(self.prepare):
            return
        self._log.info("consumer.started", batch_size=self._batch_size)
        # the next batch is fetched while this one is applied: NATS and PostgreSQL overlap
        fetching: asyncio.Task[list[Any]] | None = asyncio.create_task(self._fetch())
        try:
            while fetching is not None:
                msgs = await fetching
                fetching = None if self._stop.is_set() else asyncio.create_task(self._fetch())
                if msgs:
                    await self._process(msgs)
        finally:
            if fetching is not None:
                fetching.cancel()
                await asyncio.gather(fetching, return_exceptions=True)
            await self._close()
        self._log.info("consumer.stopped")

    async def stop(self) -> None:
        """Ask `run()` to return once the batches already fetched are applied and acknowledged.

        Returns at once; await the task running `run()` to wait for the end.
        """
        self._stop.set()

    @property
    def durable(self) -> str:
        """The durable consumer's name (also the `consumer` label of its metrics)."""
        return self._durable

    async def lag(self) -> int:
        """Messages not yet acknowledged: pending in the stream plus awaiting acknowledgement."""
        info = await self._js.consumer_info(self._stream_name, self._durable)
        lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        self._lag.set(lag)
        return lag

    async def caught_up(self) -> bool:
        """True when nothing is left to apply (for `/readyz`); False when NATS does not answer."""
        try:
            return await self.lag() == 0
        except Exception:
            return False

    async def last_sequence(self) -> int | None:
        """The highest stream sequence applied by this durable (its checkpoint row)."""
        async with self._pool.acquire(timeout=10) as conn:
            return await self._inbox.checkpoint(cast(asyncpg.Connection, conn))

    async def _connect(self, setup: Callable[[], Awaitable[None]]) -> bool:
        delay = 0.2
        while not self._stop.is_set():
            try:
                await setup()
                if self._sub is not None:
                    await self._unsubscribe()
                self._sub = await self._js.pull_subscribe_bind(
                    consumer=self._durable, stream=self._stream_name
                )
                return True
            except (nats.errors.ConnectionClosedError, ConsumerConfigError):
                raise
            except Exception as exc:
                self._log.warning("consumer.connect_failed", error=repr(exc), retry_in=delay)
                metrics.CONSUMER_ERRORS.labels(self._durable, "connect").inc()
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
        return False

    async def _close(self) -> None:
        await self._unsubscribe()
        try:
            # acknowledgements are buffered by the client; send them before the caller closes
            await self._js._nc.flush(timeout=2)
        except Exception as exc:
            self._log.warning("consumer.flush_failed", error=repr(exc))

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                self._log.debug("consumer.unsubscribe_failed", error=repr(exc))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # --- one batch ---------------------------------------------------------------------------

    async def _fetch(self) -> list[Any]:
        try:
            msgs: list[Any] = await self._sub.fetch(self._batch_size, timeout=self._fetch_timeout)
            return msgs
        except TimeoutError:
            await self._idle()
            return []
        except nats.errors.ConnectionClosedError:
            raise
        except Exception as exc:
            self._log.warning("consumer.fetch_failed", error=repr(exc))
            metrics.CONSUMER_ERRORS.labels(self._durable, "nats").inc()
            await self._sleep(1.0)
            await self._connect(self._ensure_consumer)  # e.g. the consumer was deleted
            return []

    async def _idle(self) -> None:
        now = time.monotonic()
        if now - self._lag_checked >= 5.0:
            self._lag_checked = now
            try:
                await self.lag()
            except Exception as exc:
                self._log.debug("consumer.lag_unknown", error=repr(exc))

    async def _process(self, msgs: list[Any]) -> None:
        started = time.perf_counter()
        deliveries = [delivery_from_msg(m, self._topology, self._stream) for m in msgs]
        self._batches.observe(len(deliveries))
        outcome = await self._apply_until_committed(msgs, deliveries)
        if outcome is None:
            return  # stopping while the database is away: the messages will be redelivered
        if self._after_commit is not None:
            await self._after_commit(deliveries)
        await self._settle(msgs, deliveries, outcome)
        self._batch_seconds.observe(time.perf_counter() - started)
        self._lag.set(msgs[-1].metadata.num_pending)

    async def _apply_until_committed(
        self, msgs: list[Any], deliveries: list[Delivery]
    ) -> BatchOutcome | None:
        delay = 0.2
        while True:
            try:
                return await self._apply(deliveries)
            except Exception as exc:
                self._log.warning(
                    "consumer.batch_not_applied",
                    error=repr(exc),
                    batch=len(deliveries),
                    first_sequence=deliveries[0].stream_sequence,
                    retry_in=delay,
                )
                metrics.CONSUMER_ERRORS.labels(self._durable, "database").inc()
            if self._stop.is_set():
                return None
            await self._keep_in_progress(msgs)
            await self._sleep(delay)
            delay = min(delay * 2, self._hold_max)
            if self._stop.is_set():
                return None

    async def _keep_in_progress(self, msgs: list[Any]) -> None:
        try:
            for msg in msgs:
                await msg.in_progress()
        except Exception as exc:
            self._log.debug("consumer.in_progress_failed", error=repr(exc))

    async def _apply(self, deliveries: list[Delivery]) -> BatchOutcome:
        async with self._pool.acquire(timeout=10) as conn:
            return await self._applier.apply(cast(asyncpg.Connection, conn), deliveries)

    async def _settle(
        self, msgs: list[Any], deliveries: list[Delivery], outcome: BatchOutcome
    ) -> None:
        dead_lettered = await self._publish_dead_letters(deliveries, outcome.dead)
        self._handled.inc(len(outcome.applied))
        self._duplicates.inc(len(outcome.duplicates))
        self._failed.inc(outcome.failures)
        try:
            for i in (*outcome.applied, *outcome.duplicates, *dead_lettered):
                await msgs[i].ack()
            for i, delay in outcome.retry:
                await msgs[i].nak(delay=delay)
        except Exception as exc:
            # unacknowledged messages come back after ack_wait; the inbox skips them then
            self._log.warning("consumer.ack_failed", error=repr(exc), batch=len(msgs))
            metrics.CONSUMER_ERRORS.labels(self._durable, "ack").inc()

    async def _publish_dead_letters(
        self, deliveries: list[Delivery], dead: list[DeadLetter]
    ) -> list[int]:
        if not dead:
            return []
        now = dt.datetime.now(dt.UTC)

        async def publish(letter: DeadLetter) -> None:
            event = dead_letter_event(
                deliveries[letter.index],
                reason=letter.reason,
                errors=letter.errors,
                source=self._source,
                now=now,
            )
            headers = {MSG_ID_HEADER: event.id, "Content-Type": CONTENT_TYPE}
            await self._js.publish(self._deadletter_subject, event.to_json_bytes(), headers=headers)

        results = await asyncio.gather(*(publish(d) for d in dead), return_exceptions=True)
        published = []
        for letter, result in zip(dead, results, strict=True):
            key = deliveries[letter.index].message_key
            if isinstance(result, BaseException):
                # left unacknowledged: redelivered after ack_wait and dead-lettered again
                self._log.error("consumer.dead_letter_failed", message_key=key, error=repr(result))
                metrics.CONSUMER_ERRORS.labels(self._durable, "deadletter").inc()
                continue
            published.append(letter.index)
            metrics.MESSAGES_DEAD_LETTERED.labels(self._durable, letter.cause).inc()
            self._log.warning(
                "consumer.dead_lettered", message_key=key, cause=letter.cause, reason=letter.reason
            )
        return published

"""Applying a batch of messages to PostgreSQL exactly once, in one transaction.

Handlers run in savepoint segments (see `BatchApplier`): an all-good batch of 500 costs ten
extra round trips, and a failing message costs at most the re-run of its segment. (Measured
first: a savepoint per message, or re-applying the whole batch with one, halved the rate of
batches holding a bad message.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from dxtalent_contracts.events import FieldError
from dxtalent_infra.delivery import Delivery, Handler, ManyHandler, RejectMessage, trace_ids
from dxtalent_infra.inbox import PostgresInbox

_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)


@dataclass
class DeadLetter:
    """A message of the batch to dead-letter: `cause` is `rejected` or `max_deliver`."""

    index: int
    reason: str
    errors: list[FieldError]
    cause: str


@dataclass
class BatchOutcome:
    """What one committed batch did with each message (indices into the batch)."""

    applied: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    retry: list[tuple[int, float]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    failures: int = 0


class BatchApplier:
    """Applies a batch in one transaction on `conn` and says what became of each message.

    A handler with a `handle_many` method gets each segment in one call first (see
    `ManyHandler`). Handlers run in stream order inside savepoint *segments* of up to `segment` messages (one
    round trip per segment, not per message). When a handler raises, the segment is rolled
    back, the message set aside, the handlers before it in the segment run again and the
    segment is closed there; so one bad message costs at most a segment's re-run and never
    undoes the others. Raises only when the transaction itself fails (connection lost, server
    shutting down): then nothing of the batch committed and the caller applies it again.
    """

    def __init__(
        self,
        inbox: PostgresInbox,
        handler: Handler,
        *,
        max_deliver: int,
        backoff: Sequence[float],
        latency: Any,
        log: Any,
        segment: int = 50,
    ) -> None:
        self._inbox = inbox
        self._handler = handler
        self._max_deliver = max_deliver
        self._backoff = list(backoff)
        self._latency = latency
        self._log = log
        self._segment = segment

    async def apply(
        self,
        conn: asyncpg.Connection,
        deliveries: list[Delivery],
        rejected: Mapping[int, RejectMessage] | None = None,
    ) -> BatchOutcome:
        """Claim, handle in order, release the failed, advance the checkpoint; then COMMIT.
        `rejected` are the messages the edge could not parse (by index): dead-lettered
        without reaching the handler."""
        outcome = BatchOutcome()
        async with conn.transaction():
            new = await self._inbox.claim(
                conn, [d.message_key for d in deliveries], [d.stream_sequence for d in deliveries]
            )
            todo = []
            for i, delivery in enumerate(deliveries):
                if delivery.message_key not in new:
                    outcome.duplicates.append(i)
                    continue
                new.discard(delivery.message_key)  # a second copy in this batch is a duplicate
                if rejected and i in rejected:
                    self._classify(i, delivery, rejected[i], outcome)
                else:
                    todo.append(i)
            await self._run_handlers(conn, deliveries, todo, outcome)
            failed = [i for i, _ in outcome.retry] + [d.index for d in outcome.dead]
            await self._inbox.release(conn, [deliveries[i].message_key for i in failed])
            await self._inbox.advance(conn, max(d.stream_sequence for d in deliveries))
        return outcome

    async def _run_handlers(
        self,
        conn: asyncpg.Connection,
        deliveries: list[Delivery],
        todo: list[int],
        outcome: BatchOutcome,
    ) -> None:
        many: ManyHandler | None = getattr(self._handler, "handle_many", None)
        if many is None:
            await self._one_by_one(conn, deliveries, todo, outcome)
            return
        for start in range(0, len(todo), self._segment):
            chunk = todo[start : start + self._segment]
            await conn.execute("SAVEPOINT dx_many")
            started = time.perf_counter()
            try:
                await many(conn, [deliveries[i] for i in chunk])
            except Exception as exc:
                if _connection_lost(exc, conn):
                    raise
                # something in the segment needs a message-by-message look: undo, then do that
                await conn.execute("ROLLBACK TO SAVEPOINT dx_many")
                self._log.debug("consumer.segment_fallback", size=len(chunk), error=repr(exc))
                await self._one_by_one(conn, deliveries, list(chunk), outcome)
            else:
                per_message = (time.perf_counter() - started) / len(chunk)
                for _ in chunk:
                    self._latency.observe(per_message)
                outcome.applied.extend(chunk)
            await conn.execute("RELEASE SAVEPOINT dx_many")

    async def _one_by_one(
        self,
        conn: asyncpg.Connection,
        deliveries: list[Delivery],
        todo: list[int],
        outcome: BatchOutcome,
    ) -> None:
        await conn.execute("SAVEPOINT dx_segment")
        begin = pos = 0  # positions in `todo`: start of the open segment, next to handle
        close_at = -1  # after a failure: close the segment once re-applied up to here
        while pos < len(todo):
            if pos > begin and (pos == close_at or pos - begin >= self._segment):
                await conn.execute("RELEASE SAVEPOINT dx_segment; SAVEPOINT dx_segment")
                begin = pos
            index = todo[pos]
            started = time.perf_counter()
            delivery = deliveries[index]
            try:
                # every log line of the handler carries the message's id
                with structlog.contextvars.bound_contextvars(
                    event_id=delivery.message_key, subject=delivery.subject
                ):
                    await self._handler(conn, delivery)
            except Exception as exc:
                if _connection_lost(exc, conn):
                    raise
                await conn.execute("ROLLBACK TO SAVEPOINT dx_segment")
                self._classify(index, deliveries[index], exc, outcome)
                del todo[pos]
                close_at, pos = pos, begin
                continue
            finally:
                self._latency.observe(time.perf_counter() - started)
            pos += 1
        outcome.applied.extend(todo)

    def _classify(
        self, index: int, delivery: Delivery, exc: Exception, outcome: BatchOutcome
    ) -> None:
        fields = {"message_key": delivery.message_key, "subject": delivery.subject}
        fields |= trace_ids(delivery.data)
        if isinstance(exc, RejectMessage):
            outcome.dead.append(DeadLetter(index, exc.reason, exc.errors, "rejected"))
            self._log.info("consumer.message_rejected", reason=exc.reason, **fields)
            return
        outcome.failures += 1
        attempts = delivery.num_delivered
        if attempts >= self._max_deliver:
            reason = f"handler failed after {attempts} attempts: {type(exc).__name__}: {exc}"
            outcome.dead.append(DeadLetter(index, reason, [], "max_deliver"))
            self._log.error("consumer.handler_gave_up", reason=reason, **fields)
            return
        delay = self._backoff[min(attempts, len(self._backoff)) - 1] if self._backoff else 0.0
        outcome.retry.append((index, delay))
        self._log.warning(
            "consumer.handler_failed", attempt=attempts, retry_in=delay, exc_info=exc, **fields
        )


def _connection_lost(exc: BaseException, conn: asyncpg.Connection) -> bool:
    return conn.is_closed() or isinstance(exc, _CONNECTION_ERRORS)

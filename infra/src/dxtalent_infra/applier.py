"""Applying a batch of messages to PostgreSQL exactly once, in one transaction.

A handler with `handle_many` first gets the whole batch in one call, without savepoints: a
good batch costs BEGIN, one statement claiming its keys and advancing the checkpoint, the
handler's own statements and COMMIT (decision 0202). When that call raises, the transaction
is rolled back and the batch applied again in savepoint segments (see `BatchApplier`); a
segment that fails is halved, and each half applied in one call again, until the messages
that fail are alone and go through the handler itself (decision 0250: the one-message-at-a-
time fallback that was there before cost enrollment seconds per batch under 10% rejected
input). The next `CAREFUL_BATCHES` batches go the segment way straight away, so a run of bad
input does not pay twice per batch. A handler that can tell a message it will refuse without
the database offers `check` (`delivery.Check`): run on every new message before the batch's
statements, it dead-letters those at once, and the others go on at once in one call. (Measured first: a savepoint per message, or re-applying
the whole batch with one, halved the rate of batches holding a bad message.)

A handler whose batch is one statement offers `apply_claimed` (`ClaimingHandler`): the
inbox's claim and checkpoint travel in that statement as its gate, and the batch is that
statement alone, committed on its own: one round trip instead of BEGIN, claim, statement,
COMMIT (decision 0325). A batch that `check` or the edge refuses a message of goes the way
above; when the statement raises, nothing of it was written, and the batch and the next
`CAREFUL_BATCHES` go the segment way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from dxtalent_contracts.events import FieldError
from dxtalent_infra.delivery import (
    Check,
    Delivery,
    Handler,
    ManyHandler,
    RejectMessage,
    trace_ids,
)
from dxtalent_infra.eventstore import Gate, wake_relays_after_commit
from dxtalent_infra.inbox import PostgresInbox

#: Batches applied in segments straight away after one whose all-at-once attempt failed.
CAREFUL_BATCHES = 20

_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)


#: Optional on a handler object as `apply_claimed`: applies a batch's messages (distinct keys,
#: each passed by `check`) in ONE statement on `conn`, outside any transaction, with the
#: `Gate` (the inbox's claim and checkpoint) in it, handling only the messages whose key the
#: gate lets through (`PostgresEventStore.append_gated`); returns those keys, the others
#: were applied before. Raising leaves nothing written: the batch goes the segment way.
ClaimingHandler = Callable[[asyncpg.Connection, Sequence[Delivery], Gate], Awaitable[set[str]]]


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


class _AtOnceFailedError(Exception):
    """The all-at-once attempt raised: roll back and apply the batch in segments."""


class BatchApplier:
    """Applies a batch in one transaction on `conn` and says what became of each message.

    A handler with a `handle_many` method gets each savepoint *segment* of up to `segment`
    messages in one call (see `ManyHandler`); when that raises, the segment is rolled back and
    halved (`_halves`), down to single messages, which go through the handler itself. Without
    `handle_many`, handlers run message by message inside the segments (one round trip per
    segment for its savepoint): when one raises, the segment is rolled back, the message set
    aside, the handlers before it in the segment run again and the segment is closed there.
    Either way messages are applied in stream order and one bad message never undoes the
    others. Raises only when the transaction itself fails (connection lost, server
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
        self._careful = 0  # batches left to apply in segments straight away

    async def apply(
        self,
        conn: asyncpg.Connection,
        deliveries: list[Delivery],
        rejected: Mapping[int, RejectMessage] | None = None,
    ) -> BatchOutcome:
        """Claim and advance the checkpoint, handle in order, release the failed; then COMMIT.
        `rejected` are the messages the edge could not parse (by index): dead-lettered
        without reaching the handler. The handlers' appends wake this process's relay after
        the COMMIT instead of notifying (`wake_relays_after_commit`, decision 0310)."""
        with wake_relays_after_commit():
            return await self._apply(conn, deliveries, rejected)

    async def _apply(
        self,
        conn: asyncpg.Connection,
        deliveries: list[Delivery],
        rejected: Mapping[int, RejectMessage] | None,
    ) -> BatchOutcome:
        claiming: ClaimingHandler | None = getattr(self._handler, "apply_claimed", None)
        if claiming is not None and self._careful == 0 and not conn.is_in_transaction():
            try:
                in_one = await self._apply_in_one(conn, claiming, deliveries, rejected)
            except _AtOnceFailedError as failed:
                self._careful = CAREFUL_BATCHES
                self._log.debug(
                    "consumer.batch_fallback", size=len(deliveries), error=repr(failed.__cause__)
                )
            else:
                if in_one is not None:
                    return in_one
        many: ManyHandler | None = getattr(self._handler, "handle_many", None)
        if many is not None and self._careful == 0:
            try:
                return await self._apply_at_once(conn, many, deliveries, rejected)
            except _AtOnceFailedError as failed:
                self._careful = CAREFUL_BATCHES
                self._log.debug(
                    "consumer.batch_fallback", size=len(deliveries), error=repr(failed.__cause__)
                )
        self._careful = max(0, self._careful - 1)
        outcome = BatchOutcome()
        async with conn.transaction():
            todo = await self._claim(conn, deliveries, rejected, outcome)
            await self._run_handlers(conn, deliveries, todo, outcome)
            await self._release_failed(conn, deliveries, outcome)
        return outcome

    async def _apply_in_one(
        self,
        conn: asyncpg.Connection,
        claiming: ClaimingHandler,
        deliveries: list[Delivery],
        rejected: Mapping[int, RejectMessage] | None,
    ) -> BatchOutcome | None:
        """The batch as one statement, the claim in it (`apply_claimed`); None, before any
        statement, when the edge or `check` refused one of its messages (it then goes the
        transaction way, which dead-letters them); `_AtOnceFailedError` when it raised."""
        if rejected:
            return None
        check: Check | None = getattr(self._handler, "check", None)
        outcome = BatchOutcome()
        first: dict[str, int] = {}  # each key's first message in the batch
        for i, delivery in enumerate(deliveries):
            if delivery.message_key in first:
                outcome.duplicates.append(i)
                continue
            if check is not None:
                try:
                    check(delivery)
                except Exception:
                    return None
            first[delivery.message_key] = i
        gate = self._inbox.gate(
            list(first),
            [deliveries[i].stream_sequence for i in first.values()],
            advance_to=max(d.stream_sequence for d in deliveries),
        )
        started = time.perf_counter()
        try:
            new = await claiming(conn, [deliveries[i] for i in first.values()], gate)
        except Exception as exc:
            if _connection_lost(exc, conn):
                raise
            raise _AtOnceFailedError from exc
        for key, i in first.items():
            (outcome.applied if key in new else outcome.duplicates).append(i)
        if outcome.applied:
            self._observe(started, outcome.applied)
        return outcome

    async def _apply_at_once(
        self,
        conn: asyncpg.Connection,
        many: ManyHandler,
        deliveries: list[Delivery],
        rejected: Mapping[int, RejectMessage] | None,
    ) -> BatchOutcome:
        """The whole batch in one `handle_many` call, no savepoint; `_AtOnceFailedError` (after
        the rollback) when it raises."""
        outcome = BatchOutcome()
        async with conn.transaction():
            todo = await self._claim(conn, deliveries, rejected, outcome)
            if todo:
                started = time.perf_counter()
                try:
                    await many(conn, [deliveries[i] for i in todo])
                except Exception as exc:
                    if _connection_lost(exc, conn):
                        raise
                    raise _AtOnceFailedError from exc
                self._observe(started, todo)
                outcome.applied.extend(todo)
            await self._release_failed(conn, deliveries, outcome)
        return outcome

    async def _claim(
        self,
        conn: asyncpg.Connection,
        deliveries: list[Delivery],
        rejected: Mapping[int, RejectMessage] | None,
        outcome: BatchOutcome,
    ) -> list[int]:
        """Claim the batch's keys and advance the checkpoint (one statement); the indices to
        handle. Duplicates and edge rejections go into `outcome`."""
        new = await self._inbox.claim(
            conn,
            [d.message_key for d in deliveries],
            [d.stream_sequence for d in deliveries],
            advance_to=max(d.stream_sequence for d in deliveries),
        )
        todo = []
        check: Check | None = getattr(self._handler, "check", None)
        for i, delivery in enumerate(deliveries):
            if delivery.message_key not in new:
                outcome.duplicates.append(i)
                continue
            new.discard(delivery.message_key)  # a second copy in this batch is a duplicate
            if rejected and i in rejected:
                self._classify(i, delivery, rejected[i], outcome)
                continue
            if check is not None:
                try:
                    check(delivery)
                except Exception as exc:  # RejectMessage: dead-lettered; else retried
                    self._classify(i, delivery, exc, outcome)
                    continue
            todo.append(i)
        return todo

    async def _release_failed(
        self, conn: asyncpg.Connection, deliveries: list[Delivery], outcome: BatchOutcome
    ) -> None:
        failed = [i for i, _ in outcome.retry] + [d.index for d in outcome.dead]
        await self._inbox.release(conn, [deliveries[i].message_key for i in failed])

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
            # the previous segment's savepoint is released in the same round trip
            await conn.execute(
                "RELEASE SAVEPOINT dx_many; SAVEPOINT dx_many" if start else "SAVEPOINT dx_many"
            )
            started = time.perf_counter()
            try:
                await many(conn, [deliveries[i] for i in chunk])
            except Exception as exc:
                if _connection_lost(exc, conn):
                    raise
                # something in the segment needs a closer look: undo, then halve it
                await conn.execute("ROLLBACK TO SAVEPOINT dx_many")
                self._log.debug("consumer.segment_fallback", size=len(chunk), error=repr(exc))
                await self._halves(conn, many, deliveries, chunk, outcome)
            else:
                self._observe(started, chunk)
                outcome.applied.extend(chunk)
        # the last savepoint is released by COMMIT

    async def _halves(
        self,
        conn: asyncpg.Connection,
        many: ManyHandler,
        deliveries: list[Delivery],
        failed: list[int],
        outcome: BatchOutcome,
    ) -> None:
        """`failed` (rolled back to its savepoint) in two halves, in order, each in one
        `handle_many` call in a savepoint of its own, a half that fails halved again; a single
        message goes through the handler itself, which says what becomes of it. k bad messages
        among n cost about 2k·log2(n/k) calls, instead of n calls and the re-runs of the
        message-by-message way (measured in decision 0250: enrollment under 10% rejected input
        spent seconds per batch there)."""
        if len(failed) == 1:
            await conn.execute("RELEASE SAVEPOINT dx_many; SAVEPOINT dx_many")
            await self._one(conn, deliveries, failed[0], outcome, "dx_many")
            return
        middle = len(failed) // 2
        for half in (failed[:middle], failed[middle:]):
            if len(half) == 1:
                await self._halves(conn, many, deliveries, half, outcome)
                continue
            await conn.execute("RELEASE SAVEPOINT dx_many; SAVEPOINT dx_many")
            started = time.perf_counter()
            try:
                await many(conn, [deliveries[i] for i in half])
            except Exception as exc:
                if _connection_lost(exc, conn):
                    raise
                await conn.execute("ROLLBACK TO SAVEPOINT dx_many")
                await self._halves(conn, many, deliveries, half, outcome)
            else:
                self._observe(started, half)
                outcome.applied.extend(half)

    async def _one(
        self,
        conn: asyncpg.Connection,
        deliveries: list[Delivery],
        index: int,
        outcome: BatchOutcome,
        savepoint: str,
    ) -> bool:
        """The handler on one message, just after `savepoint` was set: applied, or rolled back
        to it and classified. True when applied."""
        started = time.perf_counter()
        delivery = deliveries[index]
        try:
            await self._call(conn, delivery)
        except Exception as exc:
            if _connection_lost(exc, conn):
                raise
            await conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
            self._classify(index, delivery, exc, outcome)
            return False
        finally:
            self._latency.observe(time.perf_counter() - started)
        outcome.applied.append(index)
        return True

    async def _call(self, conn: asyncpg.Connection, delivery: Delivery) -> None:
        """The handler on one message, every log line of it carrying the message's id."""
        with structlog.contextvars.bound_contextvars(
            event_id=delivery.message_key, subject=delivery.subject
        ):
            await self._handler(conn, delivery)

    def _observe(self, started: float, indices: Sequence[int]) -> None:
        per_message = (time.perf_counter() - started) / len(indices)
        observe_many(self._latency, per_message, len(indices))

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
            try:
                await self._call(conn, deliveries[index])
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


def observe_many(histogram: Any, value: float, times: int) -> None:
    """`histogram.observe(value)` `times` times (a prometheus_client histogram child), in one
    step: the sum grows by `value * times` and the bucket `value` falls in by `times`, which
    is what `observe` does each time (its lock, bucket search and checks cost ~1.5 µs per
    message of a segment applied at once; decision 0275). Anything else, or a
    prometheus_client without those parts, is observed time by time."""
    try:
        total, bounds, buckets = histogram._sum, histogram._upper_bounds, histogram._buckets
        histogram._raise_if_not_observable()
    except AttributeError:
        for _ in range(times):
            histogram.observe(value)
        return
    total.inc(value * times)
    for bound, bucket in zip(bounds, buckets, strict=True):
        if value <= bound:
            bucket.inc(times)
            break


def _connection_lost(exc: BaseException, conn: asyncpg.Connection) -> bool:
    return conn.is_closed() or isinstance(exc, _CONNECTION_ERRORS)

"""Settling a committed batch: dead letters published (and stored by JetStream) before their
originals are acknowledged, the rest acknowledged, retries nak'ed with their backoff delay.

In two halves: `acknowledge` (applied, duplicates, retries) and `settle_dead` (dead letters,
then their originals). The consumer awaits the first and lets the second run while it
applies its next batch, so the round trip of publishing dead letters does not hold the stage
back (decision 0250)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dxtalent_infra import metrics, nats_fast
from dxtalent_infra.applier import BatchOutcome, DeadLetter
from dxtalent_infra.deadletter import dead_letter_event, publish_dead_letter
from dxtalent_infra.delivery import Delivery


@dataclass(frozen=True)
class Settling:
    """Who settles: the durable (metrics label), where dead letters go, their source, a log."""

    durable: str
    deadletter_subject: str
    source: str
    log: Any


async def acknowledge(msgs: Sequence[Any], outcome: BatchOutcome, who: Settling) -> None:
    """Acknowledge the applied messages and the duplicates, nak the retried ones."""
    metrics.MESSAGES_HANDLED.labels(who.durable).inc(len(outcome.applied))
    metrics.MESSAGES_DUPLICATE.labels(who.durable).inc(len(outcome.duplicates))
    metrics.MESSAGES_FAILED.labels(who.durable).inc(outcome.failures)
    await _ack(msgs, [*outcome.applied, *outcome.duplicates], outcome.retry, who)


async def settle_dead(
    js: Any,
    msgs: Sequence[Any],
    deliveries: Sequence[Delivery],
    outcome: BatchOutcome,
    who: Settling,
) -> None:
    """Publish the batch's dead letters, then acknowledge the originals of those stored."""
    if outcome.dead:
        dead_lettered = await _publish_dead_letters(js, deliveries, outcome.dead, who)
        await _ack(msgs, dead_lettered, [], who)


async def _ack(
    msgs: Sequence[Any], done: Sequence[int], retry: Sequence[tuple[int, float]], who: Settling
) -> None:
    try:
        await nats_fast.ack_all([msgs[i] for i in done])  # one command for the batch
        for i, delay in retry:
            await msgs[i].nak(delay=delay)
    except Exception as exc:
        # unacknowledged messages come back after ack_wait; the inbox skips them then
        who.log.warning("consumer.ack_failed", error=repr(exc), batch=len(msgs))
        metrics.CONSUMER_ERRORS.labels(who.durable, "ack").inc()


async def _publish_dead_letters(
    js: Any, deliveries: Sequence[Delivery], dead: list[DeadLetter], who: Settling
) -> list[int]:
    if not dead:
        return []
    now = dt.datetime.now(dt.UTC)
    events = [
        dead_letter_event(
            deliveries[d.index], reason=d.reason, errors=d.errors, source=who.source, now=now
        )
        for d in dead
    ]
    results = await asyncio.gather(
        *(publish_dead_letter(js, who.deadletter_subject, e) for e in events),
        return_exceptions=True,
    )
    published = []
    for letter, result in zip(dead, results, strict=True):
        key = deliveries[letter.index].message_key
        if isinstance(result, BaseException):
            # left unacknowledged: redelivered after ack_wait and dead-lettered again
            who.log.error("consumer.dead_letter_failed", message_key=key, error=repr(result))
            metrics.CONSUMER_ERRORS.labels(who.durable, "deadletter").inc()
            continue
        published.append(letter.index)
        metrics.MESSAGES_DEAD_LETTERED.labels(who.durable, letter.cause).inc()
        who.log.warning(
            "consumer.dead_lettered", message_key=key, cause=letter.cause, reason=letter.reason
        )
    return published

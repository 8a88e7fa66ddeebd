"""`ConsumerOptions.min_batch_interval` against real NATS JetStream and PostgreSQL: batches
under a steady publish start at least the interval apart (by the consumer's own stamps), an
idle consumer applies its first message without waiting it out, and `stop` cuts the wait
short (decision 0290)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

from dxtalent_infra.consumer import JetStreamConsumer
from dxtalent_infra.delivery import Delivery
from dxtalent_infra.topology import INBOUND
from tests.integration.infra.test_consumer import Env, env, keys, running  # noqa: F401
from tests.support.polling import eventually


class Starts:
    """The start stamp and size of each batch `consumer` committed (its `after_commit`)."""

    def __init__(self) -> None:
        self.consumer: JetStreamConsumer | None = None
        self.batches: list[tuple[float, int]] = []

    async def record(self, batch: Sequence[Delivery]) -> None:
        assert self.consumer is not None
        started = self.consumer.last_batch_started
        assert started is not None
        self.batches.append((started, len(batch)))

    def gaps(self) -> list[float]:
        stamps = [at for at, _ in self.batches]
        return [b - a for a, b in itertools.pairwise(stamps)]


def spaced_consumer(where: Env, interval: float) -> tuple[JetStreamConsumer, Starts]:
    starts = Starts()
    consumer = where.consumer(min_batch_interval=interval, after_commit=starts.record)
    starts.consumer = consumer
    return consumer, starts


async def test_batches_under_a_steady_publish_start_at_least_the_interval_apart(
    env: Env,  # noqa: F811
) -> None:
    """A message every 10 ms for about a second, with a 0.2 s interval: every message is
    applied once, batches start at least 0.2 s apart, and a batch takes what arrived while it
    waited (so there are fewer batches than messages)."""
    consumer, starts = spaced_consumer(env, 0.2)
    names = keys(100)
    async with running(consumer):
        for name in names:
            await env.publish([name])
            await asyncio.sleep(0.01)
        await eventually(lambda: env.has_rows(len(names)), "every message applied")
        await eventually(consumer.caught_up, "caught up")
    assert await env.rows() == (len(names), len(names))
    assert sum(n for _, n in starts.batches) == len(names)
    assert len(starts.batches) >= 2
    assert min(starts.gaps()) >= 0.2
    assert len(starts.batches) < len(names)


async def test_an_idle_consumer_applies_its_first_message_without_waiting_the_interval(
    env: Env,  # noqa: F811
) -> None:
    """The wait counts from the previous batch's start: a consumer's first message, and the
    first after an idle spell longer than the interval, start before an interval has passed
    since they were published; a message right behind a batch waits the interval out."""
    interval = 2.0
    consumer, starts = spaced_consumer(env, interval)
    async with running(consumer):
        published = time.perf_counter()
        await env.publish(["first"])
        await eventually(lambda: env.has_rows(1), "the first message applied")
        assert starts.batches[0][0] - published < interval

        idle_until = starts.batches[0][0] + interval + 0.1  # idle longer than the interval
        await asyncio.sleep(idle_until - time.perf_counter())
        published = time.perf_counter()
        await env.publish(["after-idle"])
        await eventually(lambda: env.has_rows(2), "the message after the idle spell applied")
        assert starts.batches[1][0] - published < interval

        await env.publish(["right-behind"])
        await eventually(lambda: env.has_rows(3), "the message right behind applied")
    assert starts.gaps()[1] >= interval


async def test_a_backlog_of_full_batches_does_not_wait(
    env: Env,  # noqa: F811
) -> None:
    """Full batches are a backlog, not a trickle: with batches of 10 and a 5 s interval, 50
    messages published beforehand go through in batches, full after the first, that do not
    wait for each other (the interval would otherwise cap the rate at one batch per
    interval)."""
    interval = 5.0
    names = keys(50)
    await env.publish(names)
    starts = Starts()
    consumer = env.consumer(batch_size=10, min_batch_interval=interval, after_commit=starts.record)
    starts.consumer = consumer
    async with running(consumer):
        await eventually(lambda: env.has_rows(len(names)), "every message applied")
    sizes = [n for _, n in starts.batches]
    # the first batch may be short (it goes with what came within the fill window of its
    # first message, on a busy machine less than the backlog); the others are full
    assert sum(sizes) == len(names)
    assert all(n == 10 for n in sizes[1:-1]), sizes
    assert max(starts.gaps()) < interval


async def test_a_short_batch_topped_up_full_from_a_backlog_does_not_wait(
    env: Env,  # noqa: F811
) -> None:
    """The batch fetched while the one before is applied is often short even when a backlog
    builds up meanwhile: topped up to full, it goes at once. Here "first" takes 0.5 s to
    apply; 3 messages come during it (the next batch, fetched short), then 27 more (a backlog
    of full batches of 10 once topped up): no batch waits out the 5 s interval."""
    interval = 5.0
    starts = Starts()
    consumer = env.consumer(batch_size=10, min_batch_interval=interval, after_commit=starts.record)
    starts.consumer = consumer
    env.effects.delay = 0.5

    async def first_started() -> bool:
        return consumer.last_batch_started is not None

    async with running(consumer):
        await env.publish(["first"])
        await eventually(first_started, "the first batch started")
        await env.publish(keys(3, "short"))
        await asyncio.sleep(0.1)
        env.effects.delay = 0
        await env.publish(keys(27, "backlog"))
        await eventually(lambda: env.has_rows(31), "every message applied")
    assert [n for _, n in starts.batches] == [1, 10, 10, 10]
    assert max(starts.gaps()) < interval


async def test_stop_cuts_the_wait_short_and_applies_the_waiting_batch(
    env: Env,  # noqa: F811
) -> None:
    """`stop` while a fetched batch waits out a 5 s interval: the batch is applied and
    acknowledged at once (it starts well before the interval is over), and run() returns."""
    interval = 5.0
    consumer, starts = spaced_consumer(env, interval)
    task = asyncio.create_task(consumer.run())
    await env.publish(["first"])
    await eventually(lambda: env.has_rows(1), "the first message applied")
    await env.publish(["waiting"])
    stream = env.topology.stream(INBOUND.name)

    async def fetched() -> bool:  # delivered to the consumer, not yet applied
        info = await env.js.consumer_info(stream, env.durable)
        return bool(info.delivered.stream_seq == 2 and info.ack_floor.stream_seq == 1)

    await eventually(fetched, "the second message fetched", within=interval / 2)
    await consumer.stop()
    await asyncio.wait_for(task, 15)
    assert await env.rows() == (2, 2)
    assert len(starts.batches) == 2
    assert starts.gaps()[0] < interval  # the wait was cut short by stop
    info = await env.js.consumer_info(stream, env.durable)
    assert info.num_ack_pending == 0
    assert info.ack_floor.stream_seq == 2

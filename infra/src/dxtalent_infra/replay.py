"""Read a whole stream from its first message, in order: what projection rebuilds start from.

An ephemeral pull consumer without acknowledgements (deliver policy `all`) is read in batches
until it has caught up with the stream as it was when the replay began. Its consumer
sequence must rise by exactly one per message; a gap (messages lost in a reconnect) raises
`ReplayInterruptedError` rather than rebuilding a projection with a hole in it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nats.js import api

from dxtalent_infra.consumer import set_filter_subjects
from dxtalent_infra.delivery import Delivery, delivery_from_msg
from dxtalent_infra.topology import Topology

BatchHandler = Callable[[Sequence[Delivery]], Awaitable[None]]
MessageHandler = Callable[[Delivery], Awaitable[None]]


class ReplayInterruptedError(RuntimeError):
    """Messages went missing during a replay (e.g. NATS reconnected); start it again."""


async def replay(
    js: Any,
    topology: Topology,
    stream: str,
    handler: MessageHandler,
    *,
    filter_subjects: Sequence[str] | None = None,
    batch_size: int = 1000,
) -> int:
    """Call `handler` for every message of contract stream `stream`, in order; return the count."""

    async def each(batch: Sequence[Delivery]) -> None:
        for delivery in batch:
            await handler(delivery)

    return await replay_batches(
        js, topology, stream, each, filter_subjects=filter_subjects, batch_size=batch_size
    )


async def replay_batches(  # noqa: PLR0913 - keyword options of one read
    js: Any,
    topology: Topology,
    stream: str,
    handler: BatchHandler,
    *,
    filter_subjects: Sequence[str] | None = None,
    batch_size: int = 1000,
    fetch_timeout: float = 2.0,
    start_sequence: int = 1,
    on_pending: Callable[[int], None] | None = None,
) -> int:
    """Like `replay`, but hands over each fetched batch at once (for `unnest` / COPY writes).

    From stream sequence `start_sequence` on (a rebuild's catch-up); `on_pending` is told how
    many messages the replay will read (a progress bar's total)."""
    stream_name = topology.stream(stream)
    end = (await js.stream_info(stream_name)).state.last_seq
    name = "replay-" + uuid.uuid4().hex[:16]
    config = api.ConsumerConfig(
        name=name,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.NONE,
        inactive_threshold=60.0,
        mem_storage=True,
    )
    if start_sequence > 1:
        config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = start_sequence
    set_filter_subjects(js, config, [topology.subject(s) for s in filter_subjects or ()])
    info = await js.add_consumer(stream_name, config=config)
    try:
        if on_pending is not None:
            on_pending(int(info.num_pending or 0))
        if not info.num_pending or start_sequence > end:
            return 0
        sub = await js.pull_subscribe_bind(consumer=name, stream=stream_name)
        try:
            return await _read(
                sub,
                topology=topology,
                stream=stream,
                handler=handler,
                end=end,
                batch_size=batch_size,
                fetch_timeout=fetch_timeout,
            )
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream_name, name)


async def _read(
    sub: Any,
    *,
    topology: Topology,
    stream: str,
    handler: BatchHandler,
    end: int,
    batch_size: int,
    fetch_timeout: float,
) -> int:
    count = 0
    while True:
        try:
            msgs = await sub.fetch(batch_size, timeout=fetch_timeout)
        except TimeoutError:
            info = await sub.consumer_info()
            if info.num_pending:
                continue
            if info.delivered.consumer_seq != count:
                raise ReplayInterruptedError(
                    f"replay of {stream}: {info.delivered.consumer_seq} delivered, {count} read"
                ) from None
            return count
        batch: list[Delivery] = []
        for msg in msgs:
            if msg.metadata.sequence.consumer != count + len(batch) + 1:
                raise ReplayInterruptedError(
                    f"replay of {stream}: expected message {count + len(batch) + 1}, got "
                    f"{msg.metadata.sequence.consumer}"
                )
            batch.append(delivery_from_msg(msg, topology, stream))
        await handler(batch)
        count += len(batch)
        last = msgs[-1].metadata
        if last.num_pending == 0 or last.sequence.stream >= end:
            return count

"""replay / replay_batches against real NATS JetStream: the whole stream, in order, once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import nats
import pytest

from dxtalent_infra.delivery import Delivery
from dxtalent_infra.replay import replay, replay_batches
from dxtalent_infra.topology import EVENTS, Topology

SUBJECTS = ("dx.events.enrollment.course-completed", "dx.events.enrollment.employee-left")


@pytest.fixture
async def js(nats_url: str, topology: Topology) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_url)
    jsc = nc.jetstream()
    await jsc.add_stream(
        name=topology.stream(EVENTS.name), subjects=[topology.subject(s) for s in EVENTS.subjects]
    )
    yield jsc
    await nc.close()


async def publish(js: Any, topology: Topology, n: int) -> list[tuple[str, str]]:
    """n events alternating between two subjects; returns (subject, key) in publish order."""
    sent = []
    for i in range(n):
        subject, key = SUBJECTS[i % 2], f"e-{i}"
        await js.publish(topology.subject(subject), key.encode(), headers={"Nats-Msg-Id": key})
        sent.append((subject, key))
    return sent


async def test_replay_returns_every_message_in_order(js: Any, topology: Topology) -> None:
    """Every message of the stream reaches the handler once, in stream order, prefix stripped."""
    sent = await publish(js, topology, 120)
    seen: list[Delivery] = []

    async def keep(d: Delivery) -> None:
        seen.append(d)

    count = await replay(js, topology, EVENTS.name, keep, batch_size=50)
    assert count == 120
    assert [(d.subject, d.message_key) for d in seen] == sent
    assert [d.stream_sequence for d in seen] == list(range(1, 121))
    assert all(d.data == d.message_key.encode() for d in seen)
    assert await js.consumers_info(topology.stream(EVENTS.name)) == []


async def test_replay_with_a_filter_reads_only_that_subject(js: Any, topology: Topology) -> None:
    """filter_subjects narrows the replay to contract subjects, order kept."""
    sent = await publish(js, topology, 30)
    seen: list[str] = []

    async def keep(d: Delivery) -> None:
        seen.append(d.message_key)

    count = await replay(js, topology, EVENTS.name, keep, filter_subjects=[SUBJECTS[1]])
    assert count == 15
    assert seen == [key for subject, key in sent if subject == SUBJECTS[1]]


async def test_replay_batches_hands_over_batches_in_order(js: Any, topology: Topology) -> None:
    """The batch variant gets batches of at most batch_size, together the whole stream."""
    sent = await publish(js, topology, 45)
    batches: list[list[str]] = []

    async def keep(batch: Sequence[Delivery]) -> None:
        batches.append([d.message_key for d in batch])

    assert await replay_batches(js, topology, EVENTS.name, keep, batch_size=20) == 45
    assert all(0 < len(b) <= 20 for b in batches)
    assert [k for b in batches for k in b] == [key for _, key in sent]


async def test_replay_of_an_empty_stream_returns_zero(js: Any, topology: Topology) -> None:
    """Nothing to read: the handler is never called."""

    async def never(d: Delivery) -> None:
        raise AssertionError("no message expected")

    assert await replay(js, topology, EVENTS.name, never) == 0


async def test_replay_batches_from_a_sequence_reads_the_rest(js: Any, topology: Topology) -> None:
    """`start_sequence` starts a rebuild's catch-up where it left off; `on_pending` is told
    how many messages are left to read."""
    sent = await publish(js, topology, 30)
    seen: list[int] = []
    pending: list[int] = []

    async def keep(batch: Sequence[Delivery]) -> None:
        seen.extend(d.stream_sequence for d in batch)

    count = await replay_batches(
        js, topology, EVENTS.name, keep, batch_size=7, start_sequence=11, on_pending=pending.append
    )
    assert count == 20
    assert seen == list(range(11, 31))
    assert pending == [20]
    assert len(sent) == 30
    assert await replay_batches(js, topology, EVENTS.name, keep, start_sequence=31) == 0

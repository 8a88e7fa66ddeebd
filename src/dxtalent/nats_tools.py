"""What the CLI does on NATS for integrators and operators: publish facts, list and re-drive
dead letters."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from dxtalent_contracts import subjects
from dxtalent_contracts.envelope import CONTENT_TYPE
from dxtalent_contracts.events import MessageRejected, MessageRejectedEvent
from dxtalent_contracts.registry import SUBJECT_BY_TYPE
from dxtalent_infra.topology import DEADLETTER, Topology

UNKNOWN_SUBJECT = subjects.INBOUND_UNRECOGNISED


@dataclass
class PublishReport:
    published: int = 0
    duplicates: int = 0
    unrecognised: int = 0


def subject_for(raw: bytes) -> tuple[str, str | None]:
    """The inbound subject for a raw CloudEvent by its type, and its id. Messages whose type
    cannot be read still go to the inbound stream, so enrollment dead-letters them with a
    reason instead of the publisher dropping them silently."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return UNKNOWN_SUBJECT, None
    if not isinstance(doc, dict):
        return UNKNOWN_SUBJECT, None
    event_id = doc.get("id") if isinstance(doc.get("id"), str) else None
    subject = SUBJECT_BY_TYPE.get(str(doc.get("type")))
    if subject is None or not subject.startswith("dx.inbound."):
        return UNKNOWN_SUBJECT, event_id
    return subject, event_id


async def publish_raw(
    nats_url: str,
    messages: Sequence[bytes],
    topology: Topology | None = None,
    progress: Callable[[int], None] | None = None,
    window: int = 256,
) -> PublishReport:
    """Publish CloudEvents to their inbound subjects with Nats-Msg-Id = id, awaiting every
    JetStream ack (pipelined in windows)."""
    topology = topology or Topology()
    report = PublishReport()
    nc = await nats.connect(nats_url, name="dxtalent-publish")
    js = nc.jetstream()
    try:
        for start in range(0, len(messages), window):
            chunk = messages[start : start + window]
            futures = []
            for raw in chunk:
                subject, event_id = subject_for(raw)
                headers = {"Content-Type": CONTENT_TYPE}
                if event_id:
                    headers["Nats-Msg-Id"] = event_id
                if subject == UNKNOWN_SUBJECT:
                    report.unrecognised += 1
                futures.append(js.publish(topology.subject(subject), raw, headers=headers))
            for ack in await asyncio.gather(*futures):
                report.published += 1
                if ack.duplicate:
                    report.duplicates += 1
            if progress is not None:
                progress(len(chunk))
    finally:
        await nc.drain()
    return report


@dataclass(frozen=True)
class DeadLetter:
    sequence: int
    event_id: str
    data: MessageRejected


async def list_dead_letters(nats_url: str, topology: Topology | None = None) -> list[DeadLetter]:
    """Every dead letter kept in DX_DEADLETTER, oldest first."""
    topology = topology or Topology()
    nc = await nats.connect(nats_url, name="dxtalent-dlq")
    js = nc.jetstream()
    out: list[DeadLetter] = []
    try:
        stream = topology.stream(DEADLETTER.name)
        info = await js.stream_info(stream)
        if info.state.messages == 0:
            return out
        sub = await js.pull_subscribe(
            topology.subject(subjects.DEADLETTER_ALL),
            stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0),
        )
        while len(out) < info.state.messages:
            try:
                msgs = await sub.fetch(min(500, info.state.messages - len(out)), timeout=2)
            except nats.errors.TimeoutError:
                break
            for msg in msgs:
                letter = MessageRejectedEvent.model_validate_json(msg.data)
                out.append(DeadLetter(msg.metadata.sequence.stream, letter.id, letter.data))
                await msg.ack()
        await sub.unsubscribe()
    finally:
        await nc.drain()
    return out


async def redrive(
    nats_url: str,
    sequences: Sequence[int] | None,
    topology: Topology | None = None,
    delete: bool = True,
) -> int:
    """Send dead letters through again, on their original subject with their original bytes.
    A fresh Nats-Msg-Id lets JetStream accept the message again; enrollment's own idempotency
    (by CloudEvents source and id) still holds. Re-driven letters are removed unless `delete`
    is False."""
    topology = topology or Topology()
    letters = await list_dead_letters(nats_url, topology)
    chosen = [d for d in letters if sequences is None or d.sequence in sequences]
    nc = await nats.connect(nats_url, name="dxtalent-redrive")
    js = nc.jetstream()
    try:
        for letter in chosen:
            original = base64.b64decode(letter.data.original_base64)
            headers = dict(letter.data.original_headers)
            headers["Nats-Msg-Id"] = f"redrive-{letter.sequence}-{headers.get('Nats-Msg-Id', '')}"
            await js.publish(topology.subject(letter.data.subject), original, headers=headers)
            if delete:
                await js.delete_msg(topology.stream(DEADLETTER.name), letter.sequence)
    finally:
        await nc.drain()
    return len(chosen)

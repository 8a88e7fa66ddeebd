"""What the CLI does on NATS for integrators and operators: publish facts, list and re-drive
dead letters."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy, PubAck
from nats.js.errors import NoStreamResponseError, NotFoundError

from dxtalent.errors import UserError
from dxtalent_contracts import subjects
from dxtalent_contracts.envelope import CONTENT_TYPE
from dxtalent_contracts.events import MessageRejected, MessageRejectedEvent
from dxtalent_contracts.registry import SUBJECT_BY_TYPE
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import DEADLETTER, Topology

UNKNOWN_SUBJECT = subjects.INBOUND_UNRECOGNISED


class NatsUnavailableError(UserError):
    """The NATS server does not answer, or refuses the connection."""


@dataclass(frozen=True)
class NatsAuth:
    """How the CLI identifies itself to NATS (DXT_NATS_USER / _PASSWORD / _CREDS / _TLS_CA)."""

    user: str | None = None
    password: str | None = None
    creds: str | None = None
    tls_ca: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> NatsAuth:
        password = settings.nats_password
        return cls(
            user=settings.nats_user,
            password=password.get_secret_value() if password else None,
            creds=str(settings.nats_creds) if settings.nats_creds else None,
            tls_ca=str(settings.nats_tls_ca) if settings.nats_tls_ca else None,
        )


async def _quiet(_: Exception) -> None:
    """nats-py logs every connection error with a traceback by default; the caller reports."""


#: What to do when NATS does not answer a command that uses a running system.
START_HINT = (
    "start the system with `dxtalent up`, or set DXT_NATS_URL "
    "(and DXT_NATS_USER/DXT_NATS_PASSWORD if it needs them)"
)


async def connect(
    url: str, name: str, auth: NatsAuth | None = None, hint: str = START_HINT
) -> Client:
    """One connection attempt; a server that does not answer or refuses is a
    NatsUnavailableError naming the URL, the reason and `hint`."""
    auth = auth or NatsAuth()
    try:
        tls = ssl.create_default_context(cafile=auth.tls_ca) if auth.tls_ca else None
        return await nats.connect(
            url,
            name=name,
            user=auth.user,
            password=auth.password,
            user_credentials=auth.creds,
            tls=tls,
            connect_timeout=3,
            max_reconnect_attempts=3,
            reconnect_time_wait=0.5,
            error_cb=_quiet,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise NatsUnavailableError(
            f"cannot connect to NATS at {url} ({_reason(exc)}); {hint}"
        ) from None


def _reason(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


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


#: How long `publish_raw` waits for each JetStream ack.
ACK_WAIT_S = 10.0


async def publish_raw(
    nats_url: str,
    messages: Sequence[bytes],
    topology: Topology | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    window: int = 256,
    auth: NatsAuth | None = None,
) -> PublishReport:
    """Publish CloudEvents to their inbound subjects with Nats-Msg-Id = id, awaiting every
    JetStream ack (pipelined in windows)."""
    topology = topology or Topology()
    report = PublishReport()
    nc = await connect(nats_url, "dxtalent-publish", auth)
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
                # nats-py waits 0.5 s for an ack by default: too short for a busy server
                futures.append(
                    js.publish(topology.subject(subject), raw, headers=headers, timeout=ACK_WAIT_S)
                )
            for ack in await _acks(futures, nats_url, topology):
                report.published += 1
                if ack.duplicate:
                    report.duplicates += 1
            if progress is not None:
                progress(len(chunk))
    finally:
        await nc.drain()
    return report


async def _acks(
    futures: Sequence[Awaitable[PubAck]], nats_url: str, topology: Topology
) -> list[PubAck]:
    """JetStream's acks; no stream behind the subjects is a UserError saying what to start."""
    try:
        return list(await asyncio.gather(*futures))
    except (nats.errors.NoRespondersError, NoStreamResponseError):
        raise UserError(
            f"NATS at {nats_url} has no stream for {topology.subject(subjects.INBOUND_ALL)}: "
            "no service has run on it yet (or DXT_PREFIX differs); start the system with "
            "`dxtalent up` first"
        ) from None


@dataclass(frozen=True)
class DeadLetter:
    sequence: int
    event_id: str
    data: MessageRejected


async def list_dead_letters(
    nats_url: str, topology: Topology | None = None, auth: NatsAuth | None = None
) -> list[DeadLetter]:
    """Every dead letter kept in DX_DEADLETTER, oldest first."""
    topology = topology or Topology()
    nc = await connect(nats_url, "dxtalent-dlq", auth)
    js = nc.jetstream()
    out: list[DeadLetter] = []
    try:
        stream = topology.stream(DEADLETTER.name)
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            raise UserError(
                f"NATS at {nats_url} has no stream {stream}: no service has run on it yet "
                "(or DXT_PREFIX differs); start the system with `dxtalent up`"
            ) from None
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
    auth: NatsAuth | None = None,
) -> int:
    """Send dead letters through again, on their original subject with their original bytes.
    A fresh Nats-Msg-Id lets JetStream accept the message again; enrollment's own idempotency
    (by CloudEvents source and id) still holds. Re-driven letters are removed unless `delete`
    is False."""
    topology = topology or Topology()
    letters = await list_dead_letters(nats_url, topology, auth)
    chosen = [d for d in letters if sequences is None or d.sequence in sequences]
    missing = sorted(set(sequences or ()) - {d.sequence for d in chosen})
    if missing:
        raise UserError(
            f"no dead letter with sequence {', '.join(map(str, missing))}; "
            "`dxtalent dlq list` shows the sequences there are (nothing was re-driven)"
        )
    nc = await connect(nats_url, "dxtalent-redrive", auth)
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

"""What the CLI does on NATS for integrators and operators: provision the streams, publish
facts, list and re-drive dead letters."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy, PubAck
from nats.js.errors import (
    NoStreamResponseError,
    NotFoundError,
    ServerError,
    ServiceUnavailableError,
)
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dxtalent.errors import UserError, nats_refused
from dxtalent_contracts import subjects
from dxtalent_contracts.envelope import CONTENT_TYPE
from dxtalent_contracts.events import MessageRejected, MessageRejectedEvent
from dxtalent_contracts.registry import SUBJECT_BY_TYPE
from dxtalent_infra.settings import Settings, nats_servers
from dxtalent_infra.streams import ReplicasError, ensure_streams
from dxtalent_infra.topology import DEADLETTER, INBOUND, Topology

UNKNOWN_SUBJECT = subjects.INBOUND_UNRECOGNISED


class NatsUnavailableError(UserError):
    """The NATS server does not answer, or refuses the connection."""


@dataclass(frozen=True)
class NatsAuth:
    """How the CLI identifies itself to NATS (DXT_NATS_USER / _PASSWORD / _CREDS / _TLS_CA),
    and the prefix of its reply subjects (`Settings.inbox_prefix`: `_INBOX_<user>`)."""

    user: str | None = None
    password: str | None = None
    creds: str | None = None
    tls_ca: str | None = None
    #: None: `Settings.inbox_prefix`'s rule for `user` (`_INBOX_<user>`, or `_INBOX`)
    inbox_prefix: str | None = None

    @property
    def reply_prefix(self) -> str:
        """The prefix of this connection's reply subjects, the only inbox its user may read."""
        if self.inbox_prefix is not None:
            return self.inbox_prefix
        return Settings(nats_user=self.user).inbox_prefix()

    @classmethod
    def from_settings(cls, settings: Settings) -> NatsAuth:
        password = settings.nats_password
        return cls(
            user=settings.nats_user,
            password=password.get_secret_value() if password else None,
            creds=str(settings.nats_creds) if settings.nats_creds else None,
            tls_ca=str(settings.nats_tls_ca) if settings.nats_tls_ca else None,
            inbox_prefix=settings.inbox_prefix(),
        )


#: What to do when NATS does not answer a command that uses a running system.
START_HINT = (
    "start the system with `dxtalent up`, or set DXT_NATS_URL "
    "(and DXT_NATS_USER/DXT_NATS_PASSWORD if it needs them)"
)


class Refusals:
    """nats-py's error callback of a CLI connection. An authorization violation or a TLS
    failure ends the first connection at once (nats-py would try every server again, then say
    only "no servers available", or hang after a TLS failure); a later authorization violation,
    and a permissions violation, are kept for the command to report.
    Other errors are the command's to report (nats-py would log each with a traceback)."""

    def __init__(self) -> None:
        self.connected = False
        self.authorization: str | None = None
        self.permission: str | None = None
        self.refused = asyncio.Event()  # set at a refusal after the connection was made

    async def on_error(self, exc: Exception) -> None:
        if isinstance(exc, ssl.SSLError) and not self.connected:
            raise exc  # a certificate not trusted is no better on the next try (nats-py hangs)
        text = str(exc).lower()
        if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in text:
            self.authorization = _reason(exc)
            if not self.connected:
                raise exc
            self.refused.set()
        elif "permissions violation" in text:
            self.permission = str(exc).removeprefix("nats: ").strip()
            self.refused.set()


async def connect(
    url: str,
    name: str,
    auth: NatsAuth | None = None,
    hint: str = START_HINT,
    refusals: Refusals | None = None,
) -> Client:
    """A connection to the server, or to one of a cluster's (comma-separated URLs), with
    the CLI's credentials. A server that does not answer is a NatsUnavailableError naming the
    URL, the reason and `hint`; refused credentials one saying which settings to fix, at the
    first refusal. `refusals` (the error callback) keeps what the server refuses later."""
    auth = auth or NatsAuth()
    refusals = refusals or Refusals()
    # nats-py's TLS transport makes asyncio warn "returning true from eof_received() has no
    # effect when using ssl" on stderr when the server closes; a command says one line only
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    nc = Client()
    try:
        tls = ssl.create_default_context(cafile=auth.tls_ca) if auth.tls_ca else None
        await nc.connect(
            nats_servers(url),
            name=name,
            user=auth.user,
            password=auth.password,
            user_credentials=auth.creds,
            tls=tls,
            inbox_prefix=auth.reply_prefix,
            connect_timeout=3,
            max_reconnect_attempts=3,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # typed int, takes seconds
            error_cb=refusals.on_error,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), timeout=2)
        if refusals.authorization is not None:
            raise NatsUnavailableError(nats_refused(url, auth.user, auth.creds)) from None
        if isinstance(exc, ssl.SSLCertVerificationError):
            hint = (
                "set DXT_NATS_TLS_CA to the CA certificate (PEM) that signed the server's "
                "certificate"
            )
        raise NatsUnavailableError(
            f"cannot connect to NATS at {url} ({_reason(exc)}); {hint}"
        ) from None
    refusals.connected = True
    return nc


def _reason(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


async def provision(
    nats_url: str,
    topology: Topology,
    *,
    replicas: int,
    duplicate_window_s: float,
    auth: NatsAuth | None = None,
) -> list[str]:
    """Create or update the three streams (`streams.ensure_streams`); one line per stream.
    The services have no right to do this (decision 0180): run it with the admin credential."""
    nc = await connect(nats_url, "dxtalent-provision", auth)
    try:
        infos = await ensure_streams(
            nc.jetstream(), topology, replicas=replicas, duplicate_window_s=duplicate_window_s
        )
    except ReplicasError as exc:
        raise UserError(str(exc)) from None
    except TimeoutError:
        user = (auth or NatsAuth()).user or "(no user)"
        raise UserError(
            f"NATS at {nats_url} did not answer the JetStream API as user {user}: only the "
            "admin credential may create or update streams (DXT_NATS_USER=admin)"
        ) from None
    finally:
        await nc.drain()
    return [
        f"{i.config.name}: subjects {', '.join(i.config.subjects or [])}, "
        f"{i.config.num_replicas} replica(s), {i.state.messages} messages"
        for i in infos
    ]


@dataclass
class PublishReport:
    """What one run of `publish_raw` did. `duplicates` are facts JetStream already held when
    first sent (an earlier run's); `recovered` are facts whose ack was lost with a server and
    that a retry under the same Nats-Msg-Id found stored, so they count as new."""

    published: int = 0
    duplicates: int = 0
    unrecognised: int = 0
    retried: int = 0
    recovered: int = 0
    reconnections: int = 0


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


#: Errors after which a publish is sent again under the same Nats-Msg-Id: the connection
#: or its server went away, or the stream has no leader for a moment (a node died).
_TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    ServerError,
    TimeoutError,
    OSError,
)


@dataclass
class _Outgoing:
    subject: str
    raw: bytes
    headers: dict[str, str]


class _Publisher:
    """A publishing connection to a server or a cluster that survives the death of the node it
    is connected to: nats-py moves to another server, and what was not acknowledged is sent
    again under the same Nats-Msg-Id (JetStream stores it once within its duplicate window),
    for up to `retry_for_s` seconds of no progress before giving up with a UserError."""

    def __init__(
        self,
        url: str,
        topology: Topology,
        auth: NatsAuth | None,
        *,
        retry_for_s: float,
        ack_timeout_s: float,
    ) -> None:
        self.url, self.topology, self.auth = url, topology, auth
        self.retry_for_s, self.ack_timeout_s = retry_for_s, ack_timeout_s
        self.refusals = Refusals()
        self.nc: Client | None = None
        self.report = PublishReport()

    async def open(self) -> None:
        self.refusals = Refusals()
        self.nc = await connect(self.url, "dxtalent-publish", self.auth, refusals=self.refusals)

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    async def send(self, window: Sequence[_Outgoing], total: int) -> None:
        """Every message of `window` acknowledged, or a UserError."""
        outstanding = list(window)
        first_attempt = True
        last_error: BaseException | None = None
        deadline = asyncio.get_running_loop().time() + self.retry_for_s
        wait = 0.2
        while outstanding:
            failed = await self._attempt(outstanding, first_attempt)
            if len(failed) < len(outstanding):  # progress: the cluster answers again
                deadline = asyncio.get_running_loop().time() + self.retry_for_s
            self._refused()
            if failed:
                last_error = failed[0][1]
                if isinstance(last_error, nats.errors.NoRespondersError | NoStreamResponseError):
                    await self._require_stream()
                if asyncio.get_running_loop().time() + wait > deadline:
                    raise UserError(
                        f"NATS at {self.url} acknowledged no fact for {self.retry_for_s:.0f}s "
                        f"({_reason(last_error)}); {self.report.published} of {total} facts "
                        "were published; publish the file again once NATS is back (facts "
                        "already sent are not recorded twice)"
                    )
                self.report.retried += len(failed)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 2.0)
                await self._reconnect_if_closed()
            outstanding = [item for item, _ in failed]
            first_attempt = False

    async def _attempt(
        self, outstanding: Sequence[_Outgoing], first_attempt: bool
    ) -> list[tuple[_Outgoing, BaseException]]:
        """Publish `outstanding` pipelined; the ones that failed for a transient reason."""
        if self.nc is None or self.nc.is_closed:
            return [(item, nats.errors.ConnectionClosedError()) for item in outstanding]
        js = self.nc.jetstream(timeout=self.ack_timeout_s)
        acks = asyncio.ensure_future(
            asyncio.gather(
                *(js.publish(m.subject, m.raw, headers=m.headers) for m in outstanding),
                return_exceptions=True,
            )
        )
        refused = asyncio.ensure_future(self.refusals.refused.wait())
        either: set[asyncio.Future[Any]] = {acks, refused}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        refused.cancel()
        if not acks.done():  # the server refused: no need to wait for the acks' timeout
            acks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acks
            self._refused()
        results = acks.result()
        failed: list[tuple[_Outgoing, BaseException]] = []
        for item, result in zip(outstanding, results, strict=True):
            if isinstance(result, PubAck):
                self.report.published += 1
                if result.duplicate and first_attempt:
                    self.report.duplicates += 1
                elif result.duplicate:
                    self.report.recovered += 1
            elif isinstance(result, _TRANSIENT):
                failed.append((item, result))
            elif isinstance(result, Exception):
                raise UserError(
                    f"NATS at {self.url} refused a fact on {item.subject}: {_reason(result)}"
                ) from None
            else:
                raise result
        return failed

    def _refused(self) -> None:
        """A refusal the server sent while publishing ends the command at once."""
        auth = self.auth or NatsAuth()
        if self.refusals.authorization is not None:
            raise UserError(nats_refused(self.url, auth.user, auth.creds))
        if self.refusals.permission is not None:
            raise UserError(
                f"NATS at {self.url} does not let this user publish facts "
                f"({self.refusals.permission}); set DXT_NATS_USER and DXT_NATS_PASSWORD, or "
                "DXT_NATS_CREDS, to a user that may publish to "
                f"{self.topology.subject(subjects.INBOUND_ALL)}"
            )

    async def _require_stream(self) -> None:
        """No responders: a stream without a leader for a moment, or no stream at all."""
        if self.nc is None or self.nc.is_closed:
            return
        stream = self.topology.stream(INBOUND.name)
        try:
            await self.nc.jetstream(timeout=self.ack_timeout_s).stream_info(stream)
        except NotFoundError:
            raise UserError(
                f"NATS at {self.url} has no stream for "
                f"{self.topology.subject(subjects.INBOUND_ALL)}: the streams are not provisioned "
                "(or DXT_PREFIX differs); run `dxtalent provision` as NATS user admin, or start "
                "the system with `dxtalent up`"
            ) from None
        except (nats.errors.Error, TimeoutError, OSError):
            pass  # no answer now: the retry decides

    async def _reconnect_if_closed(self) -> None:
        """nats-py gave up on every server: a new connection, if one answers now."""
        if self.nc is not None and not self.nc.is_closed:
            return
        try:
            await self.open()
        except NatsUnavailableError:
            if self.refusals.authorization is not None:
                raise
            return  # none answers yet: the next retry tries again, until the deadline
        self.report.reconnections += 1


async def publish_raw(
    nats_url: str,
    messages: Sequence[bytes],
    topology: Topology | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    window: int = 256,
    auth: NatsAuth | None = None,
    retry_for_s: float = 60.0,
    ack_timeout_s: float = 5.0,
) -> PublishReport:
    """Publish CloudEvents to their inbound subjects with Nats-Msg-Id = id, awaiting every
    JetStream ack (pipelined in windows; `progress` is told after each). `nats_url` may name a
    cluster's servers (comma-separated): when the node in use dies, the client moves to
    another and every unacknowledged fact is sent again with the same Nats-Msg-Id, so one run
    stores each fact once. After `retry_for_s` seconds without an ack, a UserError says how
    many were published."""
    topology = topology or Topology()
    publisher = _Publisher(
        nats_url, topology, auth, retry_for_s=retry_for_s, ack_timeout_s=ack_timeout_s
    )
    report = publisher.report
    await publisher.open()
    try:
        for start in range(0, len(messages), window):
            chunk = []
            for raw in messages[start : start + window]:
                subject, event_id = subject_for(raw)
                headers = {"Content-Type": CONTENT_TYPE}
                if event_id:
                    headers["Nats-Msg-Id"] = event_id
                if subject == UNKNOWN_SUBJECT:
                    report.unrecognised += 1
                chunk.append(_Outgoing(topology.subject(subject), raw, headers))
            await publisher.send(chunk, len(messages))
            if progress is not None:
                progress(len(chunk))
    finally:
        await publisher.close()
    return report


def publish_with_progress(
    console: Console,
    nats_url: str,
    messages: Sequence[bytes],
    topology: Topology | None = None,
    auth: NatsAuth | None = None,
) -> PublishReport:
    """`publish_raw` behind a progress bar on `console` (nothing drawn when it is no terminal,
    as when a script reads the output)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("publishing facts", total=len(messages))
        return asyncio.run(
            publish_raw(
                nats_url, messages, topology, progress=lambda n: bar.advance(task, n), auth=auth
            )
        )


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
                f"NATS at {nats_url} has no stream {stream}: the streams are not provisioned "
                "(or DXT_PREFIX differs); run `dxtalent provision` as NATS user admin, or start "
                "the system with `dxtalent up`"
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

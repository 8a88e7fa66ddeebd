"""`dxtalent bench latency`: how long from an inbound CourseCompleted to its LevelCertified.

Prepares employees who lack exactly one level-1 skill, then, one at a time, publishes the
completion that finishes level 1 and times the LevelCertified it causes on
`dx.events.certification.level-certified`. Prints median and 99th percentile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import nats
from nats.aio.msg import Msg
from rich.console import Console

from dxtalent.nats_tools import publish_raw
from dxtalent.stack import LocalStack, running_stack
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.envelope import CloudEvent
from dxtalent_contracts.events import LevelCertifiedEvent
from dxtalent_contracts.fiscal import JST
from dxtalent_contracts.inbound import (
    CourseCompleted,
    CourseCompletedEvent,
    EmployeeUpserted,
    EmployeeUpsertedEvent,
    LeaderNominated,
    LeaderNominatedEvent,
)
from dxtalent_contracts.registry import build_event

SOURCE = "urn:bench:lms"


def _event(cls: type[CloudEvent], data: object, employee: str) -> bytes:
    time = dt.datetime(2025, 6, 1, 9, tzinfo=JST)
    event = build_event(
        cls, event_id=str(uuid.uuid4()), source=SOURCE, data=data, subject=employee, time=time
    )
    return event.to_json_bytes()


def _preparation(employees: list[str], courses: list[str]) -> list[bytes]:
    out = []
    for emp in employees:
        record = EmployeeUpserted(
            employee_id=emp,
            department_code="BENCH",
            categories=[],
            effective_date=dt.date(2025, 4, 1),
        )
        out.append(_event(EmployeeUpsertedEvent, record, emp))
        nomination = LeaderNominated(employee_id=emp, fiscal_year=2025, department_code="BENCH")
        out.append(_event(LeaderNominatedEvent, nomination, emp))
        for course in courses:
            done = CourseCompleted(
                employee_id=emp, course_id=course, completed_on=dt.date(2025, 5, 1)
            )
            out.append(_event(CourseCompletedEvent, done, emp))
    return out


async def _measure(nats_url: str, employees: list[str], last_course: str) -> list[float]:
    nc = await nats.connect(nats_url)
    waiting: dict[str, asyncio.Future[float]] = {}

    async def on_certified(msg: Msg) -> None:
        doc = json.loads(msg.data)
        future = waiting.get(doc["data"]["employee_id"])
        if future is not None and not future.done() and doc["data"]["level"] == 1:
            future.set_result(time.perf_counter())

    await nc.subscribe(LevelCertifiedEvent.nats_subject, cb=on_certified)
    latencies = []
    js = nc.jetstream()
    for emp in employees:
        waiting[emp] = asyncio.get_running_loop().create_future()
        done = CourseCompleted(
            employee_id=emp, course_id=last_course, completed_on=dt.date(2025, 6, 1)
        )
        raw = _event(CourseCompletedEvent, done, emp)
        t0 = time.perf_counter()
        await js.publish(
            CourseCompletedEvent.nats_subject, raw, headers={"Nats-Msg-Id": json.loads(raw)["id"]}
        )
        t1 = await asyncio.wait_for(waiting[emp], timeout=30)
        latencies.append((t1 - t0) * 1000)
    await nc.drain()
    return latencies


def run_latency_bench(console: Console, *, samples: int) -> None:
    """Start the system (embedded unless DXT_NATS_URL/DXT_DATABASE_URL), measure, print."""
    catalog = load_catalog()
    level1 = catalog.level_rule(1).required
    # every level-1 skill but leadership beforehand; the workshop granting it is the timed fact
    courses = [catalog.courses_granting(skill)[0].id for skill in level1 if skill != "leadership"]
    last_course = catalog.courses_granting("leadership")[0].id
    employees = [f"B{i:06d}" for i in range(samples)]
    data_dir = Path(tempfile.mkdtemp(prefix="dxtalent-bench-"))
    try:
        stack = LocalStack(
            data_dir, os.environ.get("DXT_NATS_URL"), os.environ.get("DXT_DATABASE_URL")
        )
        with running_stack(stack):
            stack.wait_ready(timeout=120, settle_checks=1)
            asyncio.run(publish_raw(str(stack.nats_url), _preparation(employees, courses)))
            stack.wait_ready(timeout=300, settle_checks=3)
            latencies = asyncio.run(_measure(str(stack.nats_url), employees, last_course))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    console.print(
        f"CourseCompleted → LevelCertified, {len(latencies)} samples, one at a time, "
        f"3 services + embedded NATS/PostgreSQL on this machine:\n"
        f"  median {statistics.median(latencies):.1f} ms   p90 {ordered[int(0.9 * (len(ordered) - 1))]:.1f} ms   "
        f"p99 {p99:.1f} ms   max {ordered[-1]:.1f} ms"
    )

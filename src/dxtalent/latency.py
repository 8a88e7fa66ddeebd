"""`dxtalent bench latency`: how long from an inbound CourseCompleted to its LevelCertified.

Prepares employees who lack exactly one level-1 skill, then publishes the completion that
finishes level 1 and times the LevelCertified it causes on
`dx.events.certification.level-certified`. Without `rate`, one at a time on an idle system;
with `rate`, under sustained load: for `duration` seconds facts are published at `rate` per
second (completions of other employees, each of which the three services process), the
timed completions spread evenly among them, and the backlog (messages not yet acknowledged by
the three durable consumers, from JetStream) is sampled every 0.25 s. Prints p50/p90/p99 and
the backlog's largest value and its value when the load ended. An ack of the load that has not
come after `ACK_GRACE_S` (nats-py's `publish_async` would wait for it forever: two runs hung
so) is asked for again by sending the fact once more under its Nats-Msg-Id; the run says how
many.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import uvloop
from nats.aio.msg import Msg
from rich.console import Console
from rich.table import Table

from dxtalent.figures import percentile, spread
from dxtalent.nats_tools import publish_raw
from dxtalent.processes import cpu_seconds_with_own
from dxtalent.stack import LocalStack, messages_per_batch, running_stack
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
from dxtalent_infra.publisher import BatchPublisher, Outgoing
from dxtalent_infra.topology import EVENTS, INBOUND

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


#: How long after a batch of the load was sent its acks may still come before it is sent again.
ACK_GRACE_S = 30.0

#: The durable consumers whose backlog is sampled under load, by stream.
DURABLES = (
    (INBOUND.name, "enrollment"),
    (EVENTS.name, "certification"),
    (EVENTS.name, "reporting"),
)


@dataclass
class LoadFigures:
    """What a sustained-load run measured."""

    latencies: list[float]  # ms
    published: int
    seconds: float
    backlog_max: int
    backlog_end: int
    resent: int = 0  # facts whose ack did not come and that were sent again


#: The day the load's completions are dated; `one_run` loads the courses offered on it.
LOAD_DAY = dt.date(2025, 6, 2)


def _load_fact(i: int, courses: list[str]) -> bytes:
    emp = f"L{i % 5000:06d}"
    done = CourseCompleted(
        employee_id=emp, course_id=courses[i % len(courses)], completed_on=LOAD_DAY
    )
    return _event(CourseCompletedEvent, done, emp)


async def _backlog(js: Any) -> int:
    total = 0
    for stream, durable in DURABLES:
        info = await js.consumer_info(stream, durable)
        total += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    return total


async def _publish_at_rate(
    nats_url: str, nc: Any, rate: int, total: int, fact: Callable[[int], bytes]
) -> tuple[float, int]:
    """Publish `fact(i)` for i < total at `rate` per second; seconds until all were acked, and
    how many were sent again. Every 5 ms the facts then due go out as one batch of the relays'
    `BatchPublisher` (the load generator shares the machine with what it measures:
    `publish_async` per fact cost it about 60 µs of CPU), the batches' acks awaited
    meanwhile. A batch whose acks have not all come within `ACK_GRACE_S` is sent once more
    under the same Nats-Msg-Ids, which JetStream stores once."""
    publisher = BatchPublisher(nc, timeout=ACK_GRACE_S)
    batches: list[tuple[list[bytes], asyncio.Task[list[bool]]]] = []
    count = 0
    started = time.perf_counter()
    try:
        while count < total:
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            if due > count:
                raws = [fact(n) for n in range(count, due)]
                count = due
                batch: list[Outgoing] = [
                    (CourseCompletedEvent.nats_subject, json.loads(raw)["id"], raw, {})
                    for raw in raws
                ]
                batches.append((raws, asyncio.create_task(publisher.publish(batch))))
            await asyncio.sleep(0.005)
        results = await asyncio.gather(*(task for _, task in batches), return_exceptions=True)
    finally:
        await publisher.close()
    unacked = [
        raw
        for (raws, _), result in zip(batches, results, strict=True)
        if isinstance(result, BaseException)
        for raw in raws
    ]
    if unacked:
        await publish_raw(nats_url, unacked)
    return time.perf_counter() - started, len(unacked)


async def _measure_under_load(
    nats_url: str,
    employees: list[str],
    last_course: str,
    load_courses: list[str],
    rate: int,
    duration: float,
) -> LoadFigures:
    """Publish at `rate` facts/s for `duration` s, the timed completions among them."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    certified: dict[str, float] = {}
    sent_at: dict[str, float] = {}
    all_certified = asyncio.Event()
    total = int(rate * duration)
    every = max(1, total // len(employees))
    timed = iter(employees)

    async def on_certified(msg: Msg) -> None:
        doc = json.loads(msg.data)
        emp = doc["data"]["employee_id"]
        if emp in sent_at and emp not in certified and doc["data"]["level"] == 1:
            certified[emp] = time.perf_counter()
            if len(certified) == len(employees):
                all_certified.set()

    # the load's facts are made before the clock starts (the generator shares the machine);
    # a timed completion is made when it is sent, its time taken then
    load = {i: _load_fact(i, load_courses) for i in range(total) if i % every != every // 2}

    def fact(i: int) -> bytes:
        emp = next(timed, None) if i % every == every // 2 else None
        if emp is None:
            return load.pop(i, None) or _load_fact(i, load_courses)
        sent_at[emp] = time.perf_counter()
        done = CourseCompleted(
            employee_id=emp, course_id=last_course, completed_on=dt.date(2025, 6, 1)
        )
        return _event(CourseCompletedEvent, done, emp)

    await nc.subscribe(LevelCertifiedEvent.nats_subject, cb=on_certified)
    backlog: list[int] = []

    async def sample() -> None:
        while True:
            backlog.append(await _backlog(js))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    seconds, resent = await _publish_at_rate(nats_url, nc, rate, total, fact)
    at_end = await _backlog(js)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_certified.wait(), 300)
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    await nc.drain()
    if len(certified) < len(employees):
        raise TimeoutError(f"{len(employees) - len(certified)} timed employees not certified")
    latencies = [(certified[e] - sent_at[e]) * 1000 for e in sent_at]
    return LoadFigures(latencies, total, seconds, max([at_end, *backlog]), at_end, resent)


@dataclass
class RunFigures:
    """What one run of the latency bench measured (the backlog only under load)."""

    latencies: list[float]  # ms
    how: str
    backlog_max: int | None = None
    backlog_end: int | None = None
    #: CPU µs per fact of each process (services, embedded servers, the bench) from the
    #: load's start until every timed fact was certified (the bench: its load built and sent);
    #: empty without a load
    cpu_us: dict[str, float] = field(default_factory=dict)
    #: mean messages per batch of each consumer under the load; empty without a load
    batch: dict[str, float] = field(default_factory=dict)

    def quantile(self, q: float) -> float:
        return percentile(self.latencies, q)


def one_run(samples: int, rate: int | None, duration: float) -> RunFigures:
    """One run on fresh servers (embedded unless DXT_NATS_URL/DXT_DATABASE_URL)."""
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
            if rate is None:
                latencies = asyncio.run(_measure(str(stack.nats_url), employees, last_course))
                return RunFigures(latencies, "one at a time")
            cpu_before = cpu_seconds_with_own(stack.process_roots())
            batches_before = stack.batch_totals()
            load = uvloop.run(
                _measure_under_load(
                    str(stack.nats_url),
                    employees,
                    last_course,
                    [c.id for c in catalog.courses if c.offered_on(LOAD_DAY)],
                    rate,
                    duration,
                )
            )
            cpu_after = cpu_seconds_with_own(stack.process_roots())
            batch = messages_per_batch(batches_before, stack.batch_totals())
            cpu_us = {
                k: 1e6 * (v - cpu_before.get(k, 0.0)) / load.published for k, v in cpu_after.items()
            }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    how = (
        f"under load: {load.published} facts in {load.seconds:.1f} s "
        f"({load.published / load.seconds:,.0f} facts/s asked {rate}"
        + (f"; {load.resent} sent again, their ack lost" if load.resent else "")
        + ")"
    )
    return RunFigures(load.latencies, how, load.backlog_max, load.backlog_end, cpu_us, batch)


def run_latency_bench(
    console: Console,
    *,
    samples: int,
    rate: int | None = None,
    duration: float = 20.0,
    runs: int = 1,
) -> None:
    """Measure `runs` times, each on fresh servers; print each run, then min / median / max."""
    figures: list[RunFigures] = []
    for i in range(runs):
        fig = one_run(samples, rate, duration)
        figures.append(fig)
        prefix = f"run {i + 1}: " if runs > 1 else ""
        console.print(
            f"{prefix}CourseCompleted → LevelCertified, {len(fig.latencies)} samples, {fig.how}, "
            f"3 services + NATS/PostgreSQL on this machine:\n"
            f"  p50 {fig.quantile(0.5):.1f} ms   p90 {fig.quantile(0.9):.1f} ms   "
            f"p99 {fig.quantile(0.99):.1f} ms   max {max(fig.latencies):.1f} ms"
        )
        if fig.backlog_max is not None:
            console.print(
                "  backlog (unacknowledged messages of the 3 durables): "
                f"max {fig.backlog_max:,}, when the load ended {fig.backlog_end:,}"
            )
        if fig.cpu_us:
            cpu = ", ".join(f"{name} {us:,.0f}" for name, us in fig.cpu_us.items())
            console.print(
                f"  CPU µs per fact under the load: {cpu}; all {sum(fig.cpu_us.values()):,.0f}"
            )
        if fig.batch:
            sizes = ", ".join(f"{name} {size:,.1f}" for name, size in fig.batch.items())
            console.print(f"  messages per batch: {sizes}")
    if runs == 1:
        return
    table = Table(
        title=f"latency (ms), {len(figures[0].latencies)} samples, min / median / max of {runs}"
    )
    table.add_column("measure")
    table.add_column("min / median / max", justify="right")
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        table.add_row(f"{name} (ms)", spread([f.quantile(q) for f in figures], ",.1f"))
    if rate is not None:
        table.add_row("backlog, largest", spread([f.backlog_max or 0 for f in figures], ",.0f"))
        table.add_row("backlog at the end", spread([f.backlog_end or 0 for f in figures], ",.0f"))
        for name in figures[0].cpu_us:
            us = [f.cpu_us.get(name, 0.0) for f in figures]
            table.add_row(f"CPU {name} (µs per fact)", spread(us, ",.0f"))
        table.add_row(
            "CPU all (µs per fact)", spread([sum(f.cpu_us.values()) for f in figures], ",.0f")
        )
        for name in figures[0].batch:
            per_run = [f.batch.get(name, 0.0) for f in figures]
            table.add_row(f"messages per batch, {name}", spread(per_run, ",.1f"))
    console.print(table)

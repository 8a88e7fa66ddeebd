"""Runs the reporting service in-process against real servers, and builds the events it reads.

`run_reporting` starts `run_service(SPEC, settings, stop)` as a task on a free port, waits until
it is ready, and on exit sets `stop` (a graceful shutdown, as on SIGTERM) and drops its schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import nats
from pydantic import SecretStr

from dxtalent_contracts.envelope import CONTENT_TYPE, CloudEvent
from dxtalent_contracts.events import (
    EmployeeLeftRecordedEvent,
    EmployeeUpdatedEvent,
    LeaderNominatedRecordedEvent,
    LeaderNominationRecorded,
    LevelCertified,
    LevelCertifiedEvent,
    LevelRevoked,
    LevelRevokedEvent,
)
from dxtalent_contracts.fiscal import fiscal_year_of
from dxtalent_contracts.inbound import EmployeeLeft, EmployeeUpserted
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.runtime import run_service, schema_for
from dxtalent_infra.servers import free_port
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import Topology
from dxtalent_reporting.service import SPEC
from tests.support.polling import eventually

ENROLLMENT = "urn:test:dxtalent:enrollment"
CERTIFICATION = "urn:test:dxtalent:certification"


@dataclass
class Reporting:
    """A running reporting service and a NATS connection to feed it."""

    http: httpx.AsyncClient
    js: Any
    topology: Topology

    async def publish(self, *events: CloudEvent, msg_id: str | None = None) -> None:
        """Publish each event on its subject, `Nats-Msg-Id` = its id (or `msg_id`)."""
        for event in events:
            headers = {"Nats-Msg-Id": msg_id or event.id, "Content-Type": CONTENT_TYPE}
            await self.js.publish(
                self.topology.subject(event.nats_subject), event.to_json_bytes(), headers=headers
            )

    async def publish_raw(self, subject: str, data: bytes) -> None:
        """Publish bytes as they are on a contract subject."""
        await self.js.publish(
            self.topology.subject(subject), data, headers={"Nats-Msg-Id": str(uuid.uuid4())}
        )

    async def settle(self) -> None:
        """Wait until the consumer has applied and acknowledged everything published."""

        async def caught_up() -> bool:
            return (await self.http.get("/v1/status")).json()["caught_up"] is True

        await eventually(caught_up, "the reporting consumer caught up (/v1/status)")

    async def progress(self, **params: Any) -> dict[str, Any]:
        """`GET /v1/progress` (200 expected) as JSON."""
        response = await self.http.get("/v1/progress", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def departments(self, **params: Any) -> dict[str, Any]:
        """`GET /v1/progress/departments` (200 expected) as JSON."""
        response = await self.http.get("/v1/progress/departments", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@contextlib.asynccontextmanager
async def run_reporting(
    nats_url: str, database_url: str, topology: Topology, api_token: str | None = None
) -> AsyncIterator[Reporting]:
    """The reporting service, running and ready; stopped and its schema dropped afterwards."""
    settings = Settings(
        provision_streams=True,  # no permissions on this server: it makes its streams
        nats_url=nats_url,
        database_url=database_url,
        prefix=topology.prefix,
        http_port=free_port(),
        api_token=SecretStr(api_token) if api_token else None,
        catalog=None,
        batch_size=100,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(SPEC, settings, stop), name="reporting")
    headers = {"Authorization": f"Bearer {api_token}"} if api_token else {}
    base_url = f"http://127.0.0.1:{settings.http_port}"
    nc = await nats.connect(nats_url)
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as http:
            service = Reporting(http, nc.jetstream(), topology)

            async def started() -> bool:
                if task.done():
                    task.result()  # raises what stopped it
                return (await http.get("/readyz")).status_code == 200

            await eventually(started, "the reporting service is ready", within=20)
            yield service
    finally:
        await nc.close()
        await _stop(task, stop)
        await _drop_schema(database_url, schema_for(settings, SPEC.name))


async def _stop(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Graceful shutdown; a service that does not finish in time is cancelled."""
    stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=15)
    except TimeoutError:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _drop_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


# --- events, as the enrollment and certification services publish them ---------------------


def _ids(causation: str | None = None) -> dict[str, Any]:
    event_id = str(uuid.uuid4())
    return {
        "specversion": "1.0",
        "id": event_id,
        "causationid": causation or event_id,
        "correlationid": causation or event_id,
        "time": dt.datetime.now(dt.UTC),
    }


def day(text: str) -> dt.date:
    """An ISO date."""
    return dt.date.fromisoformat(text)


def employee(
    employee_id: str,
    department: str,
    effective: str = "2023-04-01",
    name: str | None = None,
    categories: tuple[str, ...] = ("dx-leader",),
) -> EmployeeUpdatedEvent:
    """An HR record placing the employee in `department` from `effective`."""
    return EmployeeUpdatedEvent(
        **_ids(),
        source=ENROLLMENT,
        type="dxtalent.enrollment.EmployeeUpdated.v1",
        subject=employee_id,
        data=EmployeeUpserted(
            employee_id=employee_id,
            department_code=department,
            department_name=name,
            categories=list(categories),
            effective_date=day(effective),
        ),
    )


def left(employee_id: str, on: str) -> EmployeeLeftRecordedEvent:
    """The employee's last day was `on`."""
    return EmployeeLeftRecordedEvent(
        **_ids(),
        source=ENROLLMENT,
        type="dxtalent.enrollment.EmployeeLeft.v1",
        subject=employee_id,
        data=EmployeeLeft(employee_id=employee_id, left_on=day(on)),
    )


def nominated(employee_id: str, fiscal_year: int, department: str) -> LeaderNominatedRecordedEvent:
    """`department` nominated the employee as DX leader for `fiscal_year`."""
    return LeaderNominatedRecordedEvent(
        **_ids(),
        source=ENROLLMENT,
        type="dxtalent.enrollment.LeaderNominated.v1",
        subject=employee_id,
        data=LeaderNominationRecorded(
            employee_id=employee_id, fiscal_year=fiscal_year, department_code=department
        ),
    )


def certified(
    employee_id: str, level: int, on: str, department: str | None = "D-A"
) -> LevelCertifiedEvent:
    """Level `level` certified on `on`."""
    return LevelCertifiedEvent(
        **_ids(),
        source=CERTIFICATION,
        type="dxtalent.certification.LevelCertified.v1",
        subject=employee_id,
        data=LevelCertified(
            employee_id=employee_id,
            level=level,
            fiscal_year=fiscal_year_of(day(on)),
            certified_on=day(on),
            department_code=department,
            evidence=[],
            policy_version="test",
        ),
    )


def levels_up_to(
    employee_id: str, top: int, on: str, department: str | None = "D-A"
) -> list[LevelCertifiedEvent]:
    """Levels 1..`top`, all certified on `on`."""
    return [certified(employee_id, n, on, department) for n in range(1, top + 1)]


def revoked(employee_id: str, level: int) -> LevelRevokedEvent:
    """Level `level` revoked (a completion behind it was voided)."""
    return LevelRevokedEvent(
        **_ids(),
        source=CERTIFICATION,
        type="dxtalent.certification.LevelRevoked.v1",
        subject=employee_id,
        data=LevelRevoked(
            employee_id=employee_id, level=level, reason="completion voided", caused_by="x-1"
        ),
    )
